//! Version 2 of the trace format (fd offsets in `DmaMap` events) and reading version 1 files.

use phyr_trace::format::{decode_body, encode_frame, FormatError, Header, FRAME_HEADER_LEN, HEADER_LEN};
use phyr_trace::{read_bytes, Event, Payload, Record, Tail};

fn header() -> Header {
    Header {
        endpoint: 3,
        frame_crc: true,
        data_crc: false,
        start_unix_ns: 1_700_000_000_000_000_000,
        max_bytes: 1 << 20,
    }
}

/// A header as version `v` would have written it (version field and CRC changed).
fn with_version(v: u16) -> [u8; HEADER_LEN] {
    let mut b = header().encode();
    b[8..10].copy_from_slice(&v.to_le_bytes());
    let crc = phyr_kernels::crc32c::crc32c(&b[..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

/// A version 1 `DmaMap` body: iova 0x1000, size 0x2000, readable, has_fd (flags 0b101).
fn v1_dma_map(flags: u8) -> Vec<u8> {
    let mut body = vec![2u8, 1, 3, 0, 0, 0, 0, 0];
    body.extend_from_slice(&77u64.to_le_bytes());
    body.extend_from_slice(&0x1000u64.to_le_bytes());
    body.extend_from_slice(&0x2000u64.to_le_bytes());
    body.extend_from_slice(&[flags, 0, 0, 0, 0, 0, 0, 0]);
    body
}

fn map(has_fd: bool, fd_offset: Option<u64>) -> Record {
    Record {
        t_ns: 5,
        payload: Payload::Event {
            endpoint: 0,
            event: Event::DmaMap {
                iova: 0xfffe_0000,
                size: 0x1000,
                readable: true,
                writable: true,
                has_fd,
                fd_offset,
            },
        },
    }
}

#[test]
fn writers_write_version_2_and_readers_refuse_0_and_3() {
    assert_eq!(u16::from_le_bytes([header().encode()[8], header().encode()[9]]), 2);
    assert_eq!(Header::decode(&with_version(2)), Ok(header()));
    assert_eq!(Header::decode(&with_version(1)), Ok(header()));
    for v in [0, 3] {
        assert_eq!(
            Header::decode(&with_version(v)),
            Err(FormatError::UnsupportedVersion { version: v })
        );
    }
}

#[test]
fn a_version_1_file_reads_with_dma_maps_without_fd_offsets() {
    let mut file = with_version(1).to_vec();
    let body = v1_dma_map(0b101);
    file.extend_from_slice(&(body.len() as u32).to_le_bytes());
    file.extend_from_slice(&phyr_kernels::crc32c::crc32c(&body).to_le_bytes());
    file.extend_from_slice(&body);
    let t = read_bytes(&file).unwrap();
    assert_eq!(t.tail, Tail::Clean);
    assert_eq!(
        t.records,
        [(
            HEADER_LEN as u64,
            Record {
                t_ns: 77,
                payload: Payload::Event {
                    endpoint: 3,
                    event: Event::DmaMap {
                        iova: 0x1000,
                        size: 0x2000,
                        readable: true,
                        writable: false,
                        has_fd: true,
                        fd_offset: None,
                    }
                }
            }
        )]
    );
}

#[test]
fn a_40_byte_dma_map_with_the_fd_offset_flag_is_corruption() {
    assert!(matches!(
        decode_body(&v1_dma_map(0b1101), 0),
        Err(FormatError::BadField {
            field: "DmaMap flags",
            ..
        })
    ));
}

#[test]
fn dma_map_fd_offset_round_trips_in_48_bytes() {
    for rec in [
        map(true, Some(0x3ff_f000)),
        map(true, Some(0)),
        map(true, None),
        map(false, None),
    ] {
        let mut buf = Vec::new();
        encode_frame(&rec, true, &mut buf);
        assert_eq!(buf.len(), FRAME_HEADER_LEN + 48);
        assert_eq!(decode_body(&buf[FRAME_HEADER_LEN..], 0), Ok(rec));
    }
}

#[test]
fn dma_map_fd_offset_without_fd_or_without_its_flag_is_corruption() {
    let mut buf = Vec::new();
    encode_frame(&map(true, Some(0x1000)), false, &mut buf);
    let good = buf[FRAME_HEADER_LEN..].to_vec();
    let mut body = good.clone();
    body[32] &= !4; // fd offset recorded, but no fd
    assert!(matches!(
        decode_body(&body, 9),
        Err(FormatError::BadField {
            offset: 9,
            field: "DmaMap flags",
            ..
        })
    ));
    let mut body = good.clone();
    body[32] &= !8; // offset bytes set, flag clear
    assert_eq!(
        decode_body(&body, 9),
        Err(FormatError::BadField {
            offset: 9,
            field: "DmaMap fd_offset without flag bit 3",
            value: 0x1000,
        })
    );
    assert!(matches!(
        decode_body(&good[..44], 9),
        Err(FormatError::BodyLength { expected: 48, .. })
    ));
}
