//! Any bytes (and any fd count) into any validator: an error or a value, never a panic.

use proptest::prelude::*;
use vfio_user::wire::{
    DeviceInfoMsg, DmaMap, DmaRwLayout, DmaRwReply, DmaRwRequest, DmaUnmap, Header, IrqInfoMsg, RegionAccess,
    RegionInfoMsg, SetIrqs, Version, WriteMulti,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn validators_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), nfds in 0usize..20, count in any::<u32>()) {
        let _ = Version::parse(&bytes);
        let _ = DmaMap::parse(&bytes);
        let _ = DmaUnmap::parse(&bytes);
        let _ = DeviceInfoMsg::parse(&bytes);
        let _ = RegionInfoMsg::parse_request(&bytes);
        let _ = RegionInfoMsg::parse_reply(&bytes);
        let _ = IrqInfoMsg::parse(&bytes);
        let _ = SetIrqs::parse(&bytes, nfds);
        let _ = RegionAccess::parse_read(&bytes, 1 << 20);
        let _ = RegionAccess::parse_write(&bytes, 1 << 20);
        let _ = RegionAccess::parse_read_reply(&bytes, count);
        let _ = WriteMulti::parse(&bytes);
        for layout in [DmaRwLayout::Spec, DmaRwLayout::QemuPacked] {
            let _ = DmaRwRequest::parse(&bytes, true, layout, 1 << 20);
            let _ = DmaRwRequest::parse(&bytes, false, layout, 1 << 20);
            let _ = DmaRwReply::read_data(&bytes, count, layout);
        }
        if bytes.len() >= 16 {
            let h: [u8; 16] = bytes[..16].try_into().unwrap();
            prop_assert_eq!(Header::parse(&h).encode(), h);
        }
    }

    #[test]
    fn version_json_fuzz_never_panics(s in "\\PC{0,120}") {
        let mut p = vec![0u8, 0, 0, 0];
        p.extend_from_slice(s.as_bytes());
        p.push(0);
        let _ = Version::parse(&p);
    }
}
