//! An optimization barrier for buffers of bytes copied out of shared memory: the kernels in
//! [`crate::mem`] and the x86-64 paths store and checksum such a buffer, and must not let the
//! optimizer re-read the shared source instead of the buffer.

/// Makes the compiler forget what `buf` holds, as if code it cannot see had rewritten it: the
/// bytes later stored out of `buf` and checksummed from it are then read from `buf`, never
/// re-read from where they were copied from. Shared memory may change between two reads, and
/// the CRC must be of the bytes written (without this, the optimizer was seen turning
/// "source -> buffer -> destination" into a second copy straight from the source).
#[inline(always)]
pub fn forget_contents(buf: &mut [u8]) {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    // SAFETY: an empty template: it touches no memory; without `nomem` the compiler has to
    // assume it may have written through the pointer it is given.
    unsafe {
        core::arch::asm!("/* {0} */", in(reg) buf.as_mut_ptr(), options(nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    std::hint::black_box(buf);
}
