//! Submit files as a careless or hostile author writes them: each test is named after the input.

use std::collections::HashMap;

use super::*;

/// Buffers at 0x1000 apart from 0x10_0000, lists at 0x20_0000 + 0x100 each, BAR2 of endpoint
/// EP at 0xf400_0000 + EP * 0x400_0000 (two endpoints).
struct Fake {
    bufs: HashMap<String, u64>,
    lists: HashMap<String, (u64, u32, u32)>,
}

impl Fake {
    fn for_plan(p: &Plan) -> Fake {
        let bufs = p
            .buffers
            .iter()
            .enumerate()
            .map(|(i, b)| (b.name.clone(), 0x10_0000 + i as u64 * 0x1000))
            .collect();
        let lists = p
            .lists
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (addr, flags) = match l.at {
                    Place::Host => (0x20_0000 + i as u64 * 0x100, 0),
                    Place::Bar { ep, off } => (0xf400_0000 + ep as u64 * 0x400_0000 + off, RANGE_BUS_ADDR),
                };
                (l.name.clone(), (addr, flags, l.block_bytes()))
            })
            .collect();
        Fake { bufs, lists }
    }
}

impl Resolve for Fake {
    fn buffer(&self, name: &str) -> Option<u64> {
        self.bufs.get(name).copied()
    }
    fn list(&self, name: &str) -> Option<(u64, u32, u32)> {
        self.lists.get(name).copied()
    }
    fn bus(&mut self, ep: usize) -> Result<u64, String> {
        if ep < 2 {
            Ok(0xf400_0000 + ep as u64 * 0x400_0000)
        } else {
            Err(format!("no endpoint {ep} (2 endpoints)"))
        }
    }
    fn bar_iova(&mut self, ep: usize, off: u64) -> Result<u64, String> {
        self.bus(ep).map(|_| 0x8000_0000 + ep as u64 * 0x400_0000 + off)
    }
}

fn parse_err(text: &str) -> String {
    Plan::parse(text).expect_err("the file is refused").0
}

const DOC_EXAMPLE: &str = r#"{
  "endpoint": 0, "queue": 0,
  "buffers": [ {"name": "a", "size": "64K", "perm": "rw", "init": "pattern:7"},
               {"name": "ro", "size": 4096, "perm": "r", "init": "byte:0xee"} ],
  "lists": [
    {"name": "s", "at": "host", "entries": [
       {"addr": "buf:a+0x10", "len": 100},
       {"addr": "bus:1+0x1000", "len": 4096},
       {"addr": "bar-iova:1+0x2000", "len": "4K"},
       {"addr": "0xdead0000", "len": 16, "flags": "bus"},
       {"addr": "list:t", "flags": "chain"} ]},
    {"name": "t", "at": "bar:0:0x300000", "entries": [ {"addr": "buf:a", "len": 1} ]} ],
  "command": {"opcode": "copy", "src": "list:s", "dst": {"addr": "list:t", "len": 16},
              "pattern": "0x0123456789abcdef", "flags": 0}
}"#;

#[test]
fn the_documented_example_resolves_to_the_documented_entries() {
    let p = Plan::parse(DOC_EXAMPLE).unwrap();
    assert_eq!(p.opcode, Opcode::Copy as u8);
    assert_eq!(p.buffers[0].init, Init::Pattern(7));
    assert_eq!(p.buffers[1].init, Init::Byte(0xee));
    assert!(p.buffers[1].read_only);
    let mut f = Fake::for_plan(&p);
    let s: Vec<DmaRange> = p.lists[0].entries.iter().map(|e| e.resolve(&mut f).unwrap()).collect();
    assert_eq!(
        s[0],
        DmaRange {
            addr: 0x10_0010,
            len: 100,
            flags: 0
        }
    );
    assert_eq!(
        s[1],
        DmaRange {
            addr: 0xf800_1000,
            len: 4096,
            flags: RANGE_BUS_ADDR
        }
    );
    assert_eq!(
        s[2],
        DmaRange {
            addr: 0x8400_2000,
            len: 4096,
            flags: 0
        }
    );
    assert_eq!(s[3].flags, RANGE_BUS_ADDR);
    // list:t lives in endpoint 0's BAR: the CHAIN implies BUS_ADDR and the block's length.
    assert_eq!(
        s[4],
        DmaRange {
            addr: 0xf430_0000,
            len: 16,
            flags: RANGE_CHAIN | RANGE_BUS_ADDR
        }
    );
    let src = p.src.resolve(&mut f).unwrap();
    assert_eq!(
        src,
        DmaRange {
            addr: 0x20_0000,
            len: 80,
            flags: 0
        }
    );
    assert_eq!(p.dst.resolve(&mut f).unwrap().len, 16);
    assert_eq!(p.pattern, 0x0123_4567_89ab_cdef);
}

#[test]
fn len_above_four_gib_is_refused_not_truncated() {
    let e = parse_err(
        r#"{"lists":[{"name":"s","entries":[{"addr":"0x1000","len":4294967312}]}],"command":{"opcode":"nop"}}"#,
    );
    assert!(e.contains("does not fit an entry's 32-bit length"), "{e}");
}

#[test]
fn flags_number_above_32_bits_is_refused() {
    let e = parse_err(
        r#"{"lists":[{"name":"s","entries":[{"addr":"0","len":1,"flags":4294967296}]}],"command":{"opcode":"nop"}}"#,
    );
    assert!(e.contains("32 bits"), "{e}");
}

#[test]
fn opcode_number_above_255_is_refused() {
    let e = parse_err(r#"{"command":{"opcode":256}}"#);
    assert!(e.contains("8 bits"), "{e}");
    assert_eq!(Plan::parse(r#"{"command":{"opcode":255}}"#).unwrap().opcode, 255);
}

#[test]
fn unknown_opcode_name_is_refused() {
    assert!(parse_err(r#"{"command":{"opcode":"memcpy"}}"#).contains("not a number"));
}

#[test]
fn init_byte_above_255_is_refused() {
    let e = parse_err(r#"{"buffers":[{"name":"a","size":16,"init":"byte:0x100"}],"command":{"opcode":"nop"}}"#);
    assert!(e.contains("not a byte"), "{e}");
}

#[test]
fn zero_and_huge_buffer_sizes_are_refused() {
    for size in ["0", "\"4G\"", "\"257M\""] {
        let e = parse_err(&format!(
            r#"{{"buffers":[{{"name":"a","size":{size}}}],"command":{{"opcode":"nop"}}}}"#
        ));
        assert!(e.contains("buffer a: size"), "{size}: {e}");
    }
}

#[test]
fn size_suffix_that_overflows_is_refused() {
    let e = parse_err(r#"{"buffers":[{"name":"a","size":"0xffffffffffffffffG"}],"command":{"opcode":"nop"}}"#);
    assert!(e.contains("not a number"), "{e}");
}

#[test]
fn two_buffers_with_one_name_are_refused() {
    let e = parse_err(r#"{"buffers":[{"name":"a","size":16},{"name":"a","size":32}],"command":{"opcode":"nop"}}"#);
    assert!(e.contains("two buffers are called \"a\""), "{e}");
}

#[test]
fn two_lists_with_one_name_are_refused() {
    let e = parse_err(r#"{"lists":[{"name":"l","entries":[]},{"name":"l","entries":[]}],"command":{"opcode":"nop"}}"#);
    assert!(e.contains("two lists"), "{e}");
}

#[test]
fn unknown_field_is_refused_with_its_name() {
    let e = parse_err(r#"{"command":{"opcode":"nop"},"endpiont":1}"#);
    assert!(e.contains("endpiont"), "{e}");
}

#[test]
fn bad_perm_init_and_placement_are_refused() {
    assert!(parse_err(r#"{"buffers":[{"name":"a","size":1,"perm":"w"}],"command":{"opcode":"nop"}}"#).contains("perm"));
    assert!(
        parse_err(r#"{"buffers":[{"name":"a","size":1,"init":"ones"}],"command":{"opcode":"nop"}}"#).contains("init")
    );
    for at in ["bar:x:0", "bar:0", "bar:0:zz", "device"] {
        let e = parse_err(&format!(
            r#"{{"lists":[{{"name":"l","at":"{at}","entries":[]}}],"command":{{"opcode":"nop"}}}}"#
        ));
        assert!(e.contains("host or bar:EP:OFF"), "{at}: {e}");
    }
}

#[test]
fn unknown_flag_name_is_refused() {
    let e = parse_err(
        r#"{"lists":[{"name":"s","entries":[{"addr":"0","len":1,"flags":"bus|iommu"}]}],"command":{"opcode":"nop"}}"#,
    );
    assert!(e.contains("unknown flag \"iommu\""), "{e}");
}

#[test]
fn too_many_entries_in_one_list_are_refused() {
    let entries = vec![r#"{"addr":"0","len":1}"#; MAX_LIST_ENTRIES + 1].join(",");
    let e = parse_err(&format!(
        r#"{{"lists":[{{"name":"s","entries":[{entries}]}}],"command":{{"opcode":"nop"}}}}"#
    ));
    assert!(e.contains("entries (at most"), "{e}");
}

#[test]
fn offset_that_overflows_the_address_is_an_error_at_resolve() {
    let p = Plan::parse(r#"{"buffers":[{"name":"a","size":16}],"command":{"opcode":"nop","src":{"addr":"buf:a+0xffffffffffffffff","len":1}}}"#).unwrap();
    let e = p.src.resolve(&mut Fake::for_plan(&p)).unwrap_err().0;
    assert!(e.contains("overflows 64 bits"), "{e}");
}

#[test]
fn names_that_do_not_exist_are_errors_at_resolve() {
    let p =
        Plan::parse(r#"{"command":{"opcode":"copy","src":"list:nope","dst":{"addr":"buf:gone","len":1}}}"#).unwrap();
    let mut f = Fake::for_plan(&p);
    assert!(p.src.resolve(&mut f).unwrap_err().0.contains("no list \"nope\""));
    assert!(p.dst.resolve(&mut f).unwrap_err().0.contains("no buffer \"gone\""));
}

#[test]
fn endpoint_that_does_not_exist_is_an_error_at_resolve() {
    let p = Plan::parse(r#"{"command":{"opcode":"nop","src":{"addr":"bus:7","len":1}}}"#).unwrap();
    assert!(p
        .src
        .resolve(&mut Fake::for_plan(&p))
        .unwrap_err()
        .0
        .contains("no endpoint 7"));
}

#[test]
fn bad_endpoint_index_in_an_address_is_refused() {
    let e = parse_err(r#"{"command":{"opcode":"nop","src":{"addr":"bus:-1","len":1}}}"#);
    assert!(e.contains("not an endpoint index"), "{e}");
}

#[test]
fn entry_without_len_is_an_error_unless_a_list_implies_it() {
    let p = Plan::parse(r#"{"buffers":[{"name":"a","size":16}],"command":{"opcode":"nop","src":"buf:a"}}"#).unwrap();
    assert!(p
        .src
        .resolve(&mut Fake::for_plan(&p))
        .unwrap_err()
        .0
        .contains("needs a len"));
}

#[test]
fn a_number_for_flags_is_taken_verbatim_clearing_implied_bus_addr() {
    let p = Plan::parse(r#"{"command":{"opcode":"nop","src":{"addr":"bus:1","len":16,"flags":0}}}"#).unwrap();
    assert_eq!(p.src.resolve(&mut Fake::for_plan(&p)).unwrap().flags, 0);
}

#[test]
fn not_json_and_empty_text_are_refused() {
    assert!(parse_err("").contains("not a submit file"));
    assert!(parse_err("{\"command\":").contains("not a submit file"));
    assert!(parse_err("[1,2]").contains("not a submit file"));
}
