//! QEMU recipes: commented argument files in `qemu-configs/<name>.args`.
//!
//! Format (see qemu-configs/README.md):
//! - `# phyr: key=value ...` header lines: `endpoints=N`, `topology=S0,S1,...` (switch index of
//!   each endpoint), `memory=memfd|anon`, optional `bar2-size=BYTES`, `modules=a,b` (guest kernel
//!   modules init loads, with their dependencies), `description=...` (rest of line),
//!   `append=...` (rest of line: guest kernel command-line parameters, e.g. `iommu=pt`).
//! - other lines starting with `#` are comments; blank lines are ignored;
//! - every other line is one QEMU option: the option, whitespace, then its value (which may
//!   contain spaces), or a lone option such as `-nodefaults`;
//! - `@SOCKET_DIR@` and `@RUN_DIR@` are replaced with the run's paths.
//!
//! The harness adds the kernel, initrd, command line, console and accelerator itself.

use std::path::{Path, PathBuf};

use phyr_report::P2pDecision;

/// Why a recipe was refused; always names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("recipe {file}:{line}: {what}")]
    Line { file: String, line: usize, what: String },
    #[error("recipe {file}: {what}")]
    Whole { file: String, what: String },
    #[error("no recipe named {name:?} in {dir} (available: {available})")]
    NotFound {
        name: String,
        dir: String,
        available: String,
    },
    #[error("reading recipe {file}: {source}")]
    Io { file: String, source: std::io::Error },
}

/// Guest RAM kind: fd-backed shared memory (QEMU passes fds with DMA_MAP) or anonymous
/// memory (the device reaches it through DMA_READ/DMA_WRITE messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    Memfd,
    Anon,
}

/// One QEMU option line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub line: usize,
    pub flag: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub file: PathBuf,
    pub description: String,
    pub endpoints: usize,
    pub topology: Vec<u32>,
    pub memory: Memory,
    pub bar2_size: Option<u64>,
    /// Extra guest kernel modules to load (`# phyr: modules=a,b`).
    pub modules: Vec<String>,
    /// Guest kernel command-line parameters the machine needs (`# phyr: append=iommu=pt`).
    pub append: Option<String>,
    /// The P2P outcome the machine forces per pair of endpoints (`# phyr: p2p=0-1:bus_addr`),
    /// both directions: what the kernel must decide (the cross-check holds it to that).
    pub p2p: Vec<P2pExpect>,
    pub opts: Vec<Opt>,
}

/// One pair of `# phyr: p2p=A-B:DECISION,...`: endpoints `a` and `b` (ENDPOINT_IDs, distinct),
/// DMA by either into the other's BAR2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct P2pExpect {
    pub a: u32,
    pub b: u32,
    pub decision: P2pDecision,
}

/// `A-B:DECISION,...`.
fn parse_p2p(v: &str) -> Result<Vec<P2pExpect>, String> {
    let mut out: Vec<P2pExpect> = Vec::new();
    for item in v.split(',') {
        let bad = || {
            format!("p2p={v:?}: {item:?} is not A-B:DECISION (DECISION: bus_addr, thru_host_bridge or not_supported)")
        };
        let (pair, d) = item.split_once(':').ok_or_else(bad)?;
        let (a, b) = pair.split_once('-').ok_or_else(bad)?;
        let (a, b) = (
            a.parse::<u32>().map_err(|_| bad())?,
            b.parse::<u32>().map_err(|_| bad())?,
        );
        let decision = P2pDecision::from_name(d).ok_or_else(bad)?;
        if a == b {
            return Err(format!(
                "p2p={v:?}: {item:?} names one endpoint twice (its own BAR is always bus_addr)"
            ));
        }
        if out.iter().any(|e| (e.a, e.b) == (a, b) || (e.a, e.b) == (b, a)) {
            return Err(format!("p2p={v:?}: the pair {a}-{b} is given twice"));
        }
        out.push(P2pExpect { a, b, decision });
    }
    Ok(out)
}

/// Options the harness sets itself; a recipe that sets them would fight it.
const HARNESS_OWNED: &[&str] = &[
    "-kernel",
    "-initrd",
    "-append",
    "-serial",
    "-nographic",
    "-display",
    "-accel",
    "-enable-kvm",
    "-monitor",
    "-mon",
    "-no-reboot",
    "-daemonize",
];
/// A module name as `modprobe` takes it: letters, digits, `_` and `-`, at most 64 bytes.
pub fn valid_module_name(m: &str) -> bool {
    !m.is_empty() && m.len() <= 64 && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Kernel parameters the harness sets itself (console, IOMMU on, panic, log level).
const HARNESS_PARAMS: &[&str] = &["console", "panic", "loglevel", "rdinit", "init"];

/// Checks a recipe's `append=` value: printable ASCII, and none of the harness's own parameters.
fn check_append(a: &str) -> Result<String, String> {
    if a.is_empty() {
        return Err("append= is empty (name kernel parameters, e.g. append=iommu=pt)".into());
    }
    if let Some(c) = a.chars().find(|c| !c.is_ascii_graphic() && *c != ' ') {
        return Err(format!(
            "append={a:?} contains {c:?}; kernel parameters are printable ASCII"
        ));
    }
    for p in a.split_whitespace() {
        let key = p.split_once('=').map_or(p, |(k, _)| k);
        if HARNESS_PARAMS.contains(&key) {
            return Err(format!(
                "append= sets {key}, which phyr-harness sets itself; remove it (or pass --append to run)"
            ));
        }
    }
    Ok(a.to_owned())
}

const PLACEHOLDERS: &[&str] = &["@SOCKET_DIR@", "@RUN_DIR@"];
pub const MAX_ENDPOINTS: usize = 32;

impl Recipe {
    /// Loads `name` (a recipe name in `dir`) or a path to an `.args` file.
    pub fn load(name: &str, dir: &Path) -> Result<Recipe, RecipeError> {
        let file = if name.contains('/') || name.ends_with(".args") {
            PathBuf::from(name)
        } else {
            dir.join(format!("{name}.args"))
        };
        let text = std::fs::read_to_string(&file).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound && !name.contains('/') {
                RecipeError::NotFound {
                    name: name.into(),
                    dir: dir.display().to_string(),
                    available: list(dir).join(", "),
                }
            } else {
                RecipeError::Io {
                    file: file.display().to_string(),
                    source,
                }
            }
        })?;
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or(name).to_owned();
        Recipe::parse(&stem, &file, &text)
    }

    pub fn parse(name: &str, file: &Path, text: &str) -> Result<Recipe, RecipeError> {
        let fname = file.display().to_string();
        let err = |line: usize, what: String| RecipeError::Line {
            file: fname.clone(),
            line,
            what,
        };
        let (mut endpoints, mut topology, mut memory, mut bar2_size, mut description) =
            (None, None, None, None, String::new());
        let mut opts = Vec::new();
        let mut modules: Vec<String> = Vec::new();
        let mut append: Option<String> = None;
        let mut p2p: Vec<P2pExpect> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if let Some(header) = line.strip_prefix("# phyr:") {
                let header = header.trim();
                if let Some(d) = header.strip_prefix("description=") {
                    description = d.trim().to_owned();
                    continue;
                }
                if let Some(a) = header.strip_prefix("append=") {
                    append = Some(check_append(a.trim()).map_err(|what| err(n, what))?);
                    continue;
                }
                for kv in header.split_whitespace() {
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| err(n, format!("header item {kv:?} is not key=value")))?;
                    match k {
                        "endpoints" => {
                            let e: usize = v
                                .parse()
                                .map_err(|_| err(n, format!("endpoints={v:?} is not a number")))?;
                            if e == 0 || e > MAX_ENDPOINTS {
                                return Err(err(n, format!("endpoints={e} is outside 1..={MAX_ENDPOINTS}")));
                            }
                            endpoints = Some(e);
                        }
                        "topology" => {
                            let t: Result<Vec<u32>, _> = v.split(',').map(str::parse::<u32>).collect();
                            topology =
                                Some(t.map_err(|_| {
                                    err(n, format!("topology={v:?} must be switch numbers like 0,0,1,1"))
                                })?);
                        }
                        "memory" => {
                            memory = Some(match v {
                                "memfd" => Memory::Memfd,
                                "anon" => Memory::Anon,
                                _ => return Err(err(n, format!("memory={v:?} must be memfd or anon"))),
                            })
                        }
                        "bar2-size" => {
                            bar2_size = Some(
                                v.parse()
                                    .map_err(|_| err(n, format!("bar2-size={v:?} is not a byte count")))?,
                            )
                        }
                        "p2p" => p2p = parse_p2p(v).map_err(|what| err(n, what))?,
                        "modules" => {
                            for m in v.split(',') {
                                if !valid_module_name(m) {
                                    return Err(err(
                                        n,
                                        format!("modules={v:?}: {m:?} is not a kernel module name"),
                                    ));
                                }
                                modules.push(m.to_owned());
                            }
                        }
                        _ => {
                            return Err(err(
                                n,
                                format!(
                                "unknown header key {k:?} (known: endpoints, topology, memory, bar2-size, modules, p2p, description, append)"
                            ),
                            ))
                        }
                    }
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (flag, value) = match line.split_once(char::is_whitespace) {
                Some((f, v)) => (f, Some(v.trim().to_owned())),
                None => (line, None),
            };
            if !flag.starts_with('-') || flag.len() < 2 {
                return Err(err(
                    n,
                    format!("{flag:?} is not a QEMU option (lines are `-option value`)"),
                ));
            }
            if HARNESS_OWNED.contains(&flag) {
                return Err(err(n, format!("{flag} is set by phyr-harness (kernel, console and accelerator come from its command line); remove this line")));
            }
            if let Some(v) = &value {
                check_placeholders(v).map_err(|what| err(n, what))?;
            }
            opts.push(Opt {
                line: n,
                flag: flag.to_owned(),
                value,
            });
        }
        let whole = |what: String| RecipeError::Whole {
            file: fname.clone(),
            what,
        };
        let endpoints = endpoints.ok_or_else(|| whole("missing `# phyr: endpoints=N` header".into()))?;
        let topology = topology.unwrap_or_else(|| vec![0; endpoints]);
        if topology.len() != endpoints {
            return Err(whole(format!(
                "topology has {} entries but endpoints={endpoints}",
                topology.len()
            )));
        }
        let memory = memory.ok_or_else(|| whole("missing `memory=memfd|anon` in the `# phyr:` header".into()))?;
        if let Some(e) = p2p.iter().find(|e| e.a.max(e.b) as usize >= endpoints) {
            return Err(whole(format!(
                "p2p names endpoint {} but endpoints={endpoints}",
                e.a.max(e.b)
            )));
        }
        let r = Recipe {
            name: name.to_owned(),
            file: file.to_path_buf(),
            description,
            endpoints,
            topology,
            memory,
            bar2_size,
            modules,
            append,
            p2p,
            opts,
        };
        r.check_endpoints().map_err(whole)?;
        Ok(r)
    }

    /// Each endpoint's socket `@SOCKET_DIR@/epN.sock` must appear exactly once, and no other.
    fn check_endpoints(&self) -> Result<(), String> {
        let mut seen = vec![0usize; self.endpoints];
        for o in &self.opts {
            let Some(v) = &o.value else { continue };
            let mut rest = v.as_str();
            while let Some(pos) = rest.find("@SOCKET_DIR@/ep") {
                rest = &rest[pos + "@SOCKET_DIR@/ep".len()..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let idx: usize = digits
                    .parse()
                    .map_err(|_| format!("line {}: socket name after @SOCKET_DIR@/ep is not epN.sock", o.line))?;
                if !rest[digits.len()..].starts_with(".sock") {
                    return Err(format!(
                        "line {}: socket name after @SOCKET_DIR@/ep is not epN.sock",
                        o.line
                    ));
                }
                if idx >= self.endpoints {
                    return Err(format!(
                        "line {}: ep{idx}.sock but the header says endpoints={}",
                        o.line, self.endpoints
                    ));
                }
                seen[idx] += 1;
            }
        }
        if let Some(i) = seen.iter().position(|&c| c != 1) {
            return Err(format!(
                "endpoint ep{i}.sock is attached {} times (want exactly once)",
                seen[i]
            ));
        }
        if self.memory == Memory::Memfd
            && !self.opts.iter().any(|o| {
                o.value
                    .as_deref()
                    .is_some_and(|v| v.contains("memory-backend-memfd") && v.contains("share=on"))
            })
        {
            return Err("memory=memfd but no `-object memory-backend-memfd,...,share=on` line".into());
        }
        Ok(())
    }

    /// The options as QEMU arguments, placeholders filled in. With `edu_instead`, each
    /// vfio-user-pci device is replaced by QEMU's built-in `edu` device on the same bus and
    /// address (to test guest VFIO plumbing without phyr-device).
    pub fn args(&self, socket_dir: &Path, run_dir: &Path, edu_instead: bool) -> Result<Vec<String>, RecipeError> {
        let mut out = Vec::new();
        for o in &self.opts {
            out.push(o.flag.clone());
            let Some(v) = &o.value else { continue };
            let v = v
                .replace("@SOCKET_DIR@", &socket_dir.display().to_string())
                .replace("@RUN_DIR@", &run_dir.display().to_string());
            if edu_instead && o.flag == "-device" && v.contains("vfio-user-pci") {
                out.push(edu_for(&v).map_err(|what| RecipeError::Line {
                    file: self.file.display().to_string(),
                    line: o.line,
                    what,
                })?);
            } else {
                out.push(v);
            }
        }
        Ok(out)
    }
}

fn check_placeholders(v: &str) -> Result<(), String> {
    let mut rest = v;
    while let Some(start) = rest.find('@') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('@') else { return Ok(()) };
        let candidate = &rest[start..start + end + 2];
        let inner = &after[..end];
        if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            if !PLACEHOLDERS.contains(&candidate) {
                return Err(format!(
                    "unknown placeholder {candidate} (known: {})",
                    PLACEHOLDERS.join(", ")
                ));
            }
            rest = &after[end + 1..];
        } else {
            rest = after;
        }
    }
    Ok(())
}

/// `{"driver":"vfio-user-pci",...,"bus":"ds0","addr":"0"}` -> `{"driver":"edu","bus":"ds0","addr":"0"}`.
fn edu_for(json: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("vfio-user-pci device is not valid JSON: {e}"))?;
    let mut edu = serde_json::Map::new();
    edu.insert("driver".into(), "edu".into());
    for key in ["bus", "addr", "id"] {
        if let Some(x) = v.get(key) {
            edu.insert(key.into(), x.clone());
        }
    }
    Ok(serde_json::Value::Object(edu).to_string())
}

/// Recipe names in `dir`.
pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".args").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"# phyr: endpoints=2 topology=0,0 memory=memfd
# phyr: description=two endpoints behind one switch
# a comment
-machine q35,memory-backend=mem
-object memory-backend-memfd,id=mem,size=1G,share=on
-nodefaults
-device {"driver":"vfio-user-pci","socket":{"type":"unix","path":"@SOCKET_DIR@/ep0.sock"},"bus":"ds0"}
-device {"driver":"vfio-user-pci","socket":{"type":"unix","path":"@SOCKET_DIR@/ep1.sock"},"bus":"ds1","addr":"0"}
"#;

    fn parse(text: &str) -> Result<Recipe, RecipeError> {
        Recipe::parse("t", Path::new("t.args"), text)
    }

    #[test]
    fn parses_header_and_options() {
        let r = parse(GOOD).unwrap();
        assert_eq!(
            (r.endpoints, r.topology.clone(), r.memory),
            (2, vec![0, 0], Memory::Memfd)
        );
        assert_eq!(r.description, "two endpoints behind one switch");
        assert_eq!(r.opts.len(), 5);
        assert_eq!(
            r.opts[2],
            Opt {
                line: 6,
                flag: "-nodefaults".into(),
                value: None
            }
        );
        let args = r.args(Path::new("/r/sock"), Path::new("/r"), false).unwrap();
        assert!(args[6].contains(r#""path":"/r/sock/ep0.sock""#));
    }

    #[test]
    fn append_header_is_the_rest_of_its_line() {
        let r = parse(&GOOD.replace(
            "# a comment",
            "# phyr: append=iommu=pt pci=disable_acs_redir=0000:02:00.0;0000:02:01.0",
        ))
        .unwrap();
        assert_eq!(
            r.append.as_deref(),
            Some("iommu=pt pci=disable_acs_redir=0000:02:00.0;0000:02:01.0")
        );
        assert_eq!(parse(GOOD).unwrap().append, None);
    }

    #[test]
    fn append_header_refuses_harness_parameters_and_control_characters() {
        let e = err_of(&GOOD.replace("# a comment", "# phyr: append=iommu=pt console=tty0"));
        assert!(e.contains("t.args:3") && e.contains("sets console"), "{e}");
        let e = err_of(&GOOD.replace("# a comment", "# phyr: append=iommu=pt\x1b"));
        assert!(e.contains("printable ASCII"), "{e}");
        let e = err_of(&GOOD.replace("# a comment", "# phyr: append=a\tb"));
        assert!(e.contains("printable ASCII"), "{e}");
        assert!(err_of(&GOOD.replace("# a comment", "# phyr: append=")).contains("append= is empty"));
    }

    #[test]
    fn modules_header_lists_guest_modules() {
        let r = parse(&GOOD.replace("memory=memfd", "memory=memfd modules=dmatest,nvme-core")).unwrap();
        assert_eq!(r.modules, vec!["dmatest", "nvme-core"]);
        assert!(parse(GOOD).unwrap().modules.is_empty());
        let e = err_of(&GOOD.replace("memory=memfd", "memory=memfd modules=a,../x"));
        assert!(
            e.contains("t.args:1") && e.contains("\"../x\" is not a kernel module name"),
            "{e}"
        );
        assert!(err_of(&GOOD.replace("memory=memfd", "memory=memfd modules=")).contains("is not a kernel module name"));
    }

    #[test]
    fn p2p_header_names_each_pairs_outcome() {
        let r = parse(&GOOD.replace("memory=memfd", "memory=memfd p2p=0-1:thru_host_bridge")).unwrap();
        assert_eq!(
            r.p2p,
            vec![P2pExpect {
                a: 0,
                b: 1,
                decision: P2pDecision::ThruHostBridge
            }]
        );
        for (bad, want) in [
            ("p2p=0-1:maybe", "is not A-B:DECISION"),
            ("p2p=0:bus_addr", "is not A-B:DECISION"),
            ("p2p=0-x:bus_addr", "is not A-B:DECISION"),
            ("p2p=1-1:bus_addr", "names one endpoint twice"),
            ("p2p=0-1:bus_addr,1-0:bus_addr", "the pair 1-0 is given twice"),
            ("p2p=0-2:bus_addr", "p2p names endpoint 2 but endpoints=2"),
        ] {
            let e = err_of(&GOOD.replace("memory=memfd", &format!("memory=memfd {bad}")));
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn edu_replaces_endpoints_on_the_same_bus() {
        let args = parse(GOOD)
            .unwrap()
            .args(Path::new("/s"), Path::new("/r"), true)
            .unwrap();
        assert_eq!(args[6], r#"{"bus":"ds0","driver":"edu"}"#);
        assert_eq!(args[8], r#"{"addr":"0","bus":"ds1","driver":"edu"}"#);
    }

    fn err_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn refuses_bad_recipes_with_file_and_line() {
        assert!(err_of(&GOOD.replace("-nodefaults", "-kernel /x")).contains("t.args:6: -kernel is set by phyr-harness"));
        assert!(err_of(&GOOD.replace("-nodefaults", "nodefaults")).contains("t.args:6"));
        assert!(err_of(&GOOD.replace("endpoints=2", "endpoints=3")).contains("topology has 2 entries"));
        assert!(err_of(&GOOD.replace("endpoints=2 topology=0,0", "endpoints=1"))
            .contains("ep1.sock but the header says endpoints=1"));
        assert!(err_of(&GOOD.replace("ep1.sock", "ep0.sock")).contains("ep0.sock is attached 2 times"));
        assert!(err_of(&GOOD.replace("@SOCKET_DIR@/ep1", "@SOCKETS@/ep1")).contains("unknown placeholder @SOCKETS@"));
        assert!(err_of(&GOOD.replace("memory=memfd", "memory=huge")).contains("memfd or anon"));
        assert!(err_of(&GOOD.replace(",share=on", "")).contains("share=on"));
        assert!(err_of(&GOOD.replace("endpoints=2", "endpoints=999")).contains("outside"));
        assert!(err_of(&GOOD.replace("endpoints=2", "endpoints=x")).contains("not a number"));
        assert!(err_of(&GOOD.replace("memory=memfd", "colour=red")).contains("unknown header key"));
        assert!(err_of("-nodefaults\n").contains("missing `# phyr: endpoints=N`"));
    }

    #[test]
    fn shipped_recipes_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu-configs");
        let names = list(&dir);
        for want in [
            "default",
            "anon-ram",
            "two-switches",
            "root-ports",
            "root-ports-epyc",
            "acs-redirect",
            "passthrough",
            "bar2-8g",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
            let r = Recipe::load(want, &dir).unwrap();
            assert_eq!(r.endpoints, r.topology.len());
            assert!(!r.description.is_empty(), "{want} has no description");
            assert!(!r.p2p.is_empty(), "{want} says no P2P outcome (`# phyr: p2p=`)");
        }
        assert!(matches!(Recipe::load("nope", &dir), Err(RecipeError::NotFound { .. })));
    }
}
