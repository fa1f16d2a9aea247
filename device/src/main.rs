fn main() { eprintln!("phyr-device: not implemented yet (issue 3)"); std::process::exit(2); }
