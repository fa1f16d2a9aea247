//! Arithmetic on polynomials modulo the CRC32C polynomial P = 0x1EDC6F41 (+ x^32), in normal
//! bit order (bit k is the coefficient of x^k). A CRC value is a reflected polynomial.

/// The CRC32C polynomial without its x^32 term.
pub(crate) const POLY: u64 = 0x1EDC_6F41;

/// x^n mod P.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const fn xpow_mod(n: u32) -> u64 {
    let mut r: u64 = 1;
    let mut i = 0;
    while i < n {
        r <<= 1;
        if r & (1 << 32) != 0 {
            r ^= (1 << 32) | POLY;
        }
        i += 1;
    }
    r
}

/// (a * b) mod P for polynomials of degree < 32.
pub(crate) const fn mul_mod(a: u32, b: u32) -> u32 {
    let mut r: u64 = 0;
    let mut i = 0;
    while i < 32 {
        if (b >> i) & 1 != 0 {
            r ^= (a as u64) << i;
        }
        i += 1;
    }
    let mut d = 62;
    while d >= 32 {
        if (r >> d) & 1 != 0 {
            r ^= ((1 << 32) | POLY) << (d - 32);
        }
        d -= 1;
    }
    r as u32
}

/// `SHIFT[k]` = x^(8 * 2^k) mod P: appending 2^k zero bytes multiplies a CRC by it.
pub(crate) const SHIFT: [u32; 64] = {
    let mut t = [0u32; 64];
    t[0] = 1 << 8;
    let mut k = 1;
    while k < 64 {
        t[k] = mul_mod(t[k - 1], t[k - 1]);
        k += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_x_reduce_by_the_polynomial() {
        // x^32 mod P is P's low part; x^31 is itself.
        assert_eq!(xpow_mod(32), POLY);
        assert_eq!(xpow_mod(31), 1 << 31);
        assert_eq!(u64::from(mul_mod(1 << 16, 1 << 16)), xpow_mod(32));
        assert_eq!(u64::from(SHIFT[2]), xpow_mod(32));
    }
}
