//! Property tests of the file format: any record round-trips through a file, and no byte
//! sequence makes the reader panic.

use phyr_trace::format::{encode_frame, HEADER_LEN};
use phyr_trace::{read_bytes, Direction, DmaRecord, Event, Header, Payload, Record, Space, Tail, Target};
use proptest::prelude::*;

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::Read), Just(Direction::Write)]
}

fn space() -> impl Strategy<Value = Space> {
    prop_oneof![Just(Space::Iova), Just(Space::Bus), Just(Space::Message)]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::None),
        (any::<u32>(), any::<u64>()).prop_map(|(mapping, offset)| Target::GuestMemory { mapping, offset }),
        (any::<u16>(), any::<u8>(), any::<u64>()).prop_map(|(endpoint, bar, offset)| Target::PeerBar {
            endpoint,
            bar,
            offset
        }),
    ]
}

fn dma() -> impl Strategy<Value = DmaRecord> {
    (
        (
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
            any::<u32>(),
            any::<u8>(),
        ),
        (direction(), space(), any::<u64>(), any::<u32>(), target()),
        (any::<u16>(), any::<Option<u32>>(), any::<u32>()),
    )
        .prop_map(
            |(
                (endpoint, queue, command_id, opcode, segment, list),
                (direction, space, addr, len, target),
                (status, crc32c, dur_ns),
            )| {
                DmaRecord {
                    endpoint,
                    queue,
                    command_id,
                    opcode,
                    segment,
                    list,
                    direction,
                    space,
                    addr,
                    len,
                    target,
                    status,
                    crc32c,
                    dur_ns,
                }
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<Option<u64>>()
        )
            .prop_map(|(iova, size, readable, writable, has_fd, fd_offset)| Event::DmaMap {
                iova,
                size,
                readable,
                writable,
                has_fd: has_fd || fd_offset.is_some(),
                fd_offset,
            }),
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(iova, size, all)| Event::DmaUnmap { iova, size, all }),
        Just(Event::Reset),
        any::<u16>().prop_map(|vector| Event::Interrupt { vector }),
        (any::<u16>(), any::<u16>(), any::<u8>(), any::<u16>(), any::<u64>()).prop_map(
            |(queue, command_id, opcode, status, result)| Event::CommandDone {
                queue,
                command_id,
                opcode,
                status,
                result
            }
        ),
        Just(Event::Connected),
        Just(Event::Disconnected),
        "\\PC{0,200}".prop_map(|message| Event::Error { message }),
        any::<u64>().prop_map(|records| Event::Dropped { records }),
        Just(Event::Closed),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    let payload = prop_oneof![
        dma().prop_map(Payload::Dma),
        (any::<u16>(), event()).prop_map(|(endpoint, event)| Payload::Event { endpoint, event }),
    ];
    (any::<u64>(), payload).prop_map(|(t_ns, payload)| Record { t_ns, payload })
}

fn file_of(records: &[Record], frame_crc: bool) -> Vec<u8> {
    let h = Header {
        endpoint: 0,
        frame_crc,
        data_crc: true,
        start_unix_ns: 1,
        max_bytes: u64::MAX,
    };
    let mut b = h.encode().to_vec();
    for r in records {
        encode_frame(r, frame_crc, &mut b);
    }
    b
}

proptest! {
    #[test]
    fn any_records_round_trip(records in prop::collection::vec(record(), 0..40), frame_crc in any::<bool>()) {
        let c = read_bytes(&file_of(&records, frame_crc)).unwrap();
        prop_assert_eq!(c.tail, Tail::Clean);
        let back: Vec<Record> = c.records.into_iter().map(|(_, r)| r).collect();
        prop_assert_eq!(back, records);
    }

    #[test]
    fn reader_never_panics_on_flipped_or_cut_bytes(
        records in prop::collection::vec(record(), 1..10),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 0..4),
        cut in any::<prop::sample::Index>(),
        frame_crc in any::<bool>(),
    ) {
        let mut b = file_of(&records, frame_crc);
        for (at, x) in flips {
            let i = HEADER_LEN + at.index(b.len() - HEADER_LEN);
            b[i] ^= x;
        }
        let n = cut.index(b.len() + 1);
        // Ok or a typed error; a panic fails the test.
        let _ = read_bytes(&b[..n]);
    }

    #[test]
    fn reader_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut b = Header { endpoint: 0, frame_crc: false, data_crc: false, start_unix_ns: 0, max_bytes: 0 }.encode().to_vec();
        b.extend_from_slice(&bytes);
        let _ = read_bytes(&b);
        let _ = read_bytes(&bytes);
    }
}

#[test]
fn jsonl_form_of_every_record_kind_is_stable() {
    // The JSON Lines export is the serde form; jq users depend on these names.
    let r = Record {
        t_ns: 1,
        payload: Payload::Event {
            endpoint: 2,
            event: Event::Interrupt { vector: 3 },
        },
    };
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"t_ns":1,"payload":{"type":"event","endpoint":2,"event":{"kind":"interrupt","vector":3}}}"#
    );
}
