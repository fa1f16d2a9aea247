//! Quoting for /bin/sh: the guest's `/etc/phyr.conf`, the wrapper scripts around provisioned
//! tools, and command lines written for the user to paste.

/// Single-quotes `s` for /bin/sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A command line as a user could paste it into a shell.
pub fn shell_line(program: &str, args: &[String]) -> String {
    let mut s = sh_quote(program);
    for a in args {
        s.push(' ');
        if a.chars().all(|c| c.is_ascii_alphanumeric() || "-_=,./:@".contains(c)) {
            s.push_str(a);
        } else {
            s.push_str(&sh_quote(a));
        }
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_hostile_commands() {
        assert_eq!(sh_quote("phyr list"), "'phyr list'");
        assert_eq!(sh_quote("echo 'x'; rm"), r"'echo '\''x'\''; rm'");
    }

    #[test]
    fn shell_line_quotes_what_needs_it() {
        let s = shell_line(
            "/q/qemu",
            &["-device".into(), r#"{"driver":"edu"}"#.into(), "-m".into(), "1G".into()],
        );
        assert_eq!(s, "'/q/qemu' -device '{\"driver\":\"edu\"}' -m 1G\n");
    }
}
