use super::*;

struct NoLive;
impl Live for NoLive {
    fn q_status(&self, _: usize) -> u32 {
        0
    }
    fn sq_head(&self, _: usize) -> u32 {
        3
    }
    fn cq_tail(&self, _: usize) -> u32 {
        0
    }
    fn completed(&self) -> u64 {
        0x1_0000_0002
    }
    fn failed(&self) -> u64 {
        0
    }
}

fn file() -> RegFile {
    RegFile::new(Limits {
        endpoint: 1,
        switch: 0,
        bar2_size: 64 << 20,
        num_queues: 4,
    })
}

fn program(f: &mut RegFile, q: u32) {
    f.write(queue_reg(q, Q_SQ_BASE), 8, 0x10_0000);
    f.write(queue_reg(q, Q_CQ_BASE), 4, 0x20_0000);
    f.write(queue_reg(q, Q_CQ_BASE) + 4, 4, 0x1);
    f.write(queue_reg(q, Q_SQ_SIZE), 4, 64);
    f.write(queue_reg(q, Q_CQ_SIZE), 4, 64);
    f.write(queue_reg(q, Q_MSIX_VECTOR), 4, 2);
}

#[test]
fn identity_registers() {
    let mut f = file();
    assert_eq!(f.read(REG_ID, 4, &NoLive), Some(u64::from(PHYR_ID)));
    assert_eq!(f.read(REG_BAR2_SIZE, 8, &NoLive), Some(64 << 20));
    assert_eq!(f.read(REG_BAR2_SIZE + 4, 4, &NoLive), Some(0));
    assert_eq!(f.read(REG_COMPLETED + 4, 4, &NoLive), Some(1));
    assert_eq!(f.read(REG_ENDPOINT_ID, 4, &NoLive), Some(1));
    assert_eq!(f.read(queue_reg(0, Q_SQ_HEAD), 4, &NoLive), Some(3));
}

#[test]
fn queue_enable_validates_and_captures_config() {
    let mut f = file();
    program(&mut f, 1);
    let e = f.write(queue_reg(1, Q_CTRL), 4, u64::from(QCTRL_ENABLE | QCTRL_IRQ));
    let RegEffect::QueueEnable(1, cfg) = e else {
        panic!("{e:?}")
    };
    assert_eq!(
        (cfg.sq_base, cfg.cq_base, cfg.sq_size, cfg.vector, cfg.irq),
        (0x10_0000, 0x1_0020_0000, 64, 2, true)
    );
    // Configuration is read-only while enabled.
    assert!(matches!(
        f.write(queue_reg(1, Q_SQ_BASE), 8, 0),
        RegEffect::GuestError(_)
    ));
    assert_eq!(f.write(queue_reg(1, Q_CTRL), 4, 0), RegEffect::QueueDisable(1));
}

#[test]
fn queue_size_not_power_of_two_fails_enable_with_invalid_field() {
    let mut f = file();
    program(&mut f, 0);
    f.write(queue_reg(0, Q_SQ_SIZE), 4, 48);
    let e = f.write(queue_reg(0, Q_CTRL), 4, u64::from(QCTRL_ENABLE));
    assert_eq!(e, RegEffect::QueueEnableFailed(0, Status::INVALID_FIELD));
    assert_eq!(f.read(queue_reg(0, Q_CTRL), 4, &NoLive), Some(0));
}

#[test]
fn misaligned_sq_base_fails_enable() {
    let mut f = file();
    program(&mut f, 0);
    f.write(queue_reg(0, Q_SQ_BASE), 8, 0x10_0020);
    assert!(matches!(
        f.write(queue_reg(0, Q_CTRL), 4, 1),
        RegEffect::QueueEnableFailed(..)
    ));
}

#[test]
fn poll_without_shadow_fails_enable() {
    let mut f = file();
    program(&mut f, 0);
    let e = f.write(queue_reg(0, Q_CTRL), 4, u64::from(QCTRL_ENABLE | QCTRL_POLL));
    assert!(matches!(e, RegEffect::QueueEnableFailed(..)));
}

#[test]
fn ring_wrapping_the_address_space_fails_enable() {
    let mut f = file();
    program(&mut f, 0);
    f.write(queue_reg(0, Q_SQ_BASE), 8, u64::MAX - 63);
    assert!(matches!(
        f.write(queue_reg(0, Q_CTRL), 4, 1),
        RegEffect::QueueEnableFailed(..)
    ));
}

#[test]
fn doorbell_past_queue_size_is_ignored() {
    let mut f = file();
    program(&mut f, 0);
    assert!(matches!(
        f.write(doorbell(0, DB_SQ_TAIL), 4, 64),
        RegEffect::GuestError(_)
    ));
    assert_eq!(f.write(doorbell(0, DB_SQ_TAIL), 4, 63), RegEffect::SqTail(0, 63));
    assert_eq!(f.write(doorbell(0, DB_CQ_HEAD), 4, 5), RegEffect::CqHead(0, 5));
    assert_eq!(f.guest_errors, 1);
}

#[test]
fn wrong_width_and_unknown_offsets_are_guest_errors() {
    let mut f = file();
    assert_eq!(f.read(REG_ID, 2, &NoLive), None);
    assert_eq!(f.read(0x3FF8, 8, &NoLive), None);
    assert_eq!(f.read(REG_BAR2_SIZE + 2, 4, &NoLive), None);
    assert!(matches!(f.write(REG_ID, 4, 0), RegEffect::GuestError(_)));
    assert!(matches!(f.write(REG_CTRL, 2, 1), RegEffect::GuestError(_)));
    assert!(matches!(
        f.write(queue_reg(0, Q_SQ_BASE) + 2, 4, 1),
        RegEffect::GuestError(_)
    ));
    assert!(matches!(f.write(doorbell(4, 0), 4, 0), RegEffect::GuestError(_)));
    assert_eq!(f.guest_errors, 7);
}

#[test]
fn ctrl_reset_and_enable() {
    let mut f = file();
    assert_eq!(
        f.write(REG_CTRL, 4, u64::from(CTRL_ENABLE)),
        RegEffect::DeviceEnable(true)
    );
    assert_eq!(f.read(REG_STATUS, 4, &NoLive), Some(u64::from(STATUS_READY)));
    assert_eq!(f.write(REG_CTRL, 4, u64::from(CTRL_RESET)), RegEffect::Reset);
    assert!(matches!(f.write(REG_IRQ_TEST, 4, 8), RegEffect::GuestError(_)));
    assert_eq!(f.write(REG_IRQ_TEST, 4, 7), RegEffect::IrqTest(7));
}

#[test]
fn ignored_writes_are_counted_in_guest_errors_and_read_back_unchanged() {
    let mut f = file();
    assert_eq!(f.read(REG_VERSION, 4, &NoLive), Some(0x0001_0001));
    program(&mut f, 0);
    assert!(matches!(
        f.write(queue_reg(0, Q_CTRL), 4, u64::from(QCTRL_ENABLE)),
        RegEffect::QueueEnable(0, _)
    ));
    // Base, size and vector writes while the queue is enabled, a doorbell at the ring size.
    for (off, size, v) in [
        (queue_reg(0, Q_SQ_BASE), 8, 0x99_0000u64),
        (queue_reg(0, Q_SQ_SIZE), 4, 8),
        (queue_reg(0, Q_MSIX_VECTOR), 4, 1),
        (doorbell(0, DB_SQ_TAIL), 4, 64),
    ] {
        assert!(
            matches!(f.write(off, size, v), RegEffect::GuestError(_)),
            "{off:#x} accepted"
        );
    }
    assert_eq!(f.read(queue_reg(0, Q_SQ_BASE), 8, &NoLive), Some(0x10_0000));
    assert_eq!(f.read(queue_reg(0, Q_SQ_SIZE), 4, &NoLive), Some(64));
    assert_eq!(f.read(REG_GUEST_ERRORS, 4, &NoLive), Some(4));
    // Reading GUEST_ERRORS is not an error, a wrong-width read of it is; a reset keeps it.
    assert_eq!(f.read(REG_GUEST_ERRORS, 8, &NoLive), None);
    f.reset();
    assert_eq!(f.read(REG_GUEST_ERRORS, 4, &NoLive), Some(5));
    assert!(matches!(f.write(REG_GUEST_ERRORS, 4, 0), RegEffect::GuestError(_)));
}

#[test]
fn vector_of_eight_or_more_fails_enable_with_invalid_field() {
    let mut f = file();
    program(&mut f, 0);
    f.write(queue_reg(0, Q_MSIX_VECTOR), 4, u64::from(MSIX_VECTORS));
    assert_eq!(
        f.write(queue_reg(0, Q_CTRL), 4, u64::from(QCTRL_ENABLE)),
        RegEffect::QueueEnableFailed(0, Status::INVALID_FIELD)
    );
    assert_eq!(f.read(queue_reg(0, Q_CTRL), 4, &NoLive), Some(0));
}
