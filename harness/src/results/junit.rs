//! JUnit XML for CI: one `<testsuite>` per recipe, one `<testcase>` per TAP result, plus a
//! failing `<testcase>` for each problem with the run as a whole.

use crate::results::tap::SuiteReport;

/// Escapes text for XML attributes and content; drops characters XML 1.0 cannot carry.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// One suite's XML (`name`: the recipe and kernel, `default@7.3.4+deb13-amd64`, or `cargo`)
/// with its `properties` (e.g. `kernel`, `recipe`).
pub fn suite_xml(name: &str, properties: &[(&str, &str)], r: &SuiteReport, seconds: f64) -> String {
    let mut cases = String::new();
    let class = format!("phyr.{name}");
    let mut failures = 0;
    let mut skipped = 0;
    for t in &r.tests {
        cases.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\"",
            escape(&class),
            escape(&t.name)
        ));
        if t.skipped {
            skipped += 1;
            cases.push_str(&format!(
                ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                escape(&t.directive)
            ));
        } else if !t.ok {
            failures += 1;
            cases.push_str(&format!(
                ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                escape(&t.directive),
                escape(&t.diagnostics.join("\n"))
            ));
        } else {
            cases.push_str("/>\n");
        }
    }
    for n in r.tests.len() + 1..=r.tests.len() + r.missing() {
        failures += 1;
        cases.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"test {n} (never reported)\">\n      <failure message=\"{}\"/>\n    </testcase>\n",
            escape(&class),
            escape(r.why_missing())
        ));
    }
    if let Some(p) = r.run_failure() {
        failures += 1;
        cases.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"suite run\">\n      <failure message=\"{}\"/>\n    </testcase>\n",
            escape(&class),
            escape(p)
        ));
    }
    let total = cases.matches("<testcase ").count();
    let props = if properties.is_empty() {
        String::new()
    } else {
        let mut p = String::from("    <properties>\n");
        for (k, v) in properties {
            p.push_str(&format!(
                "      <property name=\"{}\" value=\"{}\"/>\n",
                escape(k),
                escape(v)
            ));
        }
        p + "    </properties>\n"
    };
    format!(
        "  <testsuite name=\"{}\" tests=\"{total}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{seconds:.3}\">\n{props}{cases}  </testsuite>\n",
        escape(&class)
    )
}

/// Wraps suites into a document.
pub fn document(suites: &[String]) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n{}</testsuites>\n",
        suites.concat()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tap::parse;

    #[test]
    fn writes_failures_skips_and_escapes() {
        let r = parse("=== phyr suite begin ===\n1..3\nok 1 a<b\nnot ok 2 c # got \"0x1\" & <x>\nok 3 d # SKIP no irq\n=== phyr suite end: exit 1 ===\n");
        let xml = suite_xml("default@7.3.4+deb13-amd64", &[("kernel", "7.3.4+deb13-amd64")], &r, 1.5);
        assert!(
            xml.contains("<testsuite name=\"phyr.default@7.3.4+deb13-amd64\""),
            "{xml}"
        );
        assert!(
            xml.contains("<property name=\"kernel\" value=\"7.3.4+deb13-amd64\"/>"),
            "{xml}"
        );
        assert!(xml.contains("classname=\"phyr.default@7.3.4+deb13-amd64\""), "{xml}");
        assert!(
            xml.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""),
            "{xml}"
        );
        assert!(xml.contains("name=\"a&lt;b\""));
        assert!(xml.contains("message=\"got &quot;0x1&quot; &amp; &lt;x&gt;\""));
        assert!(xml.contains("<skipped message=\"SKIP no irq\"/>"));
        let doc = document(&[xml]);
        assert!(doc.starts_with("<?xml") && doc.trim_end().ends_with("</testsuites>"));
    }

    #[test]
    fn crashed_suites_have_failing_cases() {
        let r = parse("=== phyr suite begin ===\n1..3\nok 1 a\n");
        let xml = suite_xml("anon-ram", &[], &r, 0.0);
        assert!(!xml.contains("<properties>"));
        assert!(xml.contains("tests=\"3\" failures=\"2\""), "{xml}");
        assert!(xml.contains("did not finish"));
        assert_eq!(escape("a\u{1}b"), "a?b");
    }
}
