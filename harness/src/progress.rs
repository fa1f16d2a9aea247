//! Progress for the user: one `phyr: ...` line on stderr per step (stdout stays the guest's
//! console and the test summary).

/// Prints a progress line.
pub fn say(msg: impl AsRef<str>) {
    eprintln!("phyr: {}", msg.as_ref());
}
