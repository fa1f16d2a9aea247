fn main() { eprintln!("phyr-harness: not implemented yet (issue 4)"); std::process::exit(2); }
