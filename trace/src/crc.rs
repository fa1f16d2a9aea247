//! CRC32C of the bytes a DMA transaction moved (the `crc32c` field of [`crate::DmaRecord`]).
//!
//! Hardware-accelerated where the CPU has it (SSE4.2 / ARMv8 CRC). A transfer moved in several
//! chunks folds them with [`data_crc_append`], starting from 0.

/// CRC32C (Castagnoli) of `bytes`.
#[inline]
pub fn data_crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Continues `crc` (the CRC32C of the bytes before) over `bytes`.
#[inline]
pub fn data_crc_append(crc: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_crc_equals_whole_crc() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let (a, b) = data.split_at(3333);
        assert_eq!(data_crc_append(data_crc(a), b), data_crc(&data));
        assert_eq!(data_crc(b"123456789"), 0xe306_9283); // the CRC-32C check value
    }
}
