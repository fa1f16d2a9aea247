fn main() { eprintln!("phyr: not implemented yet (issue 5)"); std::process::exit(2); }
