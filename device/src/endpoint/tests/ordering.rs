//! Completion visibility (ABI §6, §7): no completion's phase bit becomes new before the
//! rest of its entry is in place. Checked two ways: on a CQ reached by DMA messages, where the
//! device's write order is recorded message by message; and on a CQ in plain memory, by a
//! thread polling the phase bits the way a driver does while the device posts.

use std::sync::atomic::fence;

use super::*;

const CQ_MSG: u64 = MSG + 0x8000;

/// A FILL of `len` bytes whose one-entry list sits in list slot `slot`: its result is `len`.
fn fill(r: &Rig, id: u16, slot: u32, len: u32) -> Command {
    let at = DATA + 0x8000 + u64::from(slot) * 16;
    let dst = r.list(at, &[iova(DATA + u64::from(slot) * 512, len)]);
    let mut c = Command::new(Opcode::Fill, id, DmaRange::default(), dst);
    c.pattern = 0x0102_0304_0506_0708;
    c
}

/// Replays the recorded DMA_WRITEs over the CQ `[base, base + size * 32)` from zeroed memory
/// and fails if one write changes an entry's phase byte together with any other of its bytes.
fn check_phase_written_alone(log: &[(u64, Vec<u8>)], base: u64, size: u32) -> usize {
    let len = size as usize * COMPLETION_SIZE;
    let mut image = vec![0u8; len];
    let mut flips = 0;
    for (n, (iova, data)) in log.iter().enumerate() {
        let Some(off) = iova.checked_sub(base).map(|o| o as usize).filter(|&o| o < len) else {
            continue;
        };
        let before = image.clone();
        image[off..off + data.len()].copy_from_slice(data);
        for e in 0..size as usize {
            let (old, new) = (&before[e * 32..e * 32 + 32], &image[e * 32..e * 32 + 32]);
            if old[7] != new[7] {
                flips += 1;
                let body_changed = (0..32).any(|i| i != 7 && old[i] != new[i]);
                assert!(
                    !body_changed,
                    "write {n} (iova {iova:#x}, {} bytes) made entry {e}'s phase new together with its body",
                    data.len()
                );
            }
        }
    }
    flips
}

#[test]
fn completion_phase_byte_is_written_after_the_body_on_a_message_backed_cq() {
    let r = rig();
    r.w64(queue_reg(0, Q_SQ_BASE), SQ);
    r.w64(queue_reg(0, Q_CQ_BASE), CQ_MSG);
    r.w32(queue_reg(0, Q_SQ_SIZE), 8);
    r.w32(queue_reg(0, Q_CQ_SIZE), 8);
    r.w32(REG_CTRL, CTRL_ENABLE);
    r.w32(queue_reg(0, Q_CTRL), QCTRL_ENABLE);
    let slot = |s: u32| r.mem.get(CQ_MSG + u64::from(s) * 32, 32);
    let wait = |s: u32, phase: bool| {
        let t = Instant::now();
        while (slot(s)[7] & 1 != 0) != phase {
            assert!(t.elapsed() < Duration::from_secs(5), "no completion in slot {s}");
            std::thread::sleep(Duration::from_micros(50));
        }
    };
    // Five commands in one batch, then six more: the second batch wraps the CQ (two runs).
    for i in 0..5u32 {
        r.submit(0, i, &fill(&r, 10 + i as u16, i, 8 * (i + 1)));
    }
    r.w32(doorbell(0, DB_SQ_TAIL), 5);
    wait(4, true);
    r.w32(doorbell(0, DB_CQ_HEAD), 5);
    for i in 5..11u32 {
        r.submit(0, i % 8, &fill(&r, 10 + i as u16, i, 8 * (i + 1)));
    }
    r.w32(doorbell(0, DB_SQ_TAIL), 3);
    wait(2, false);
    // Slots 0..2 now hold commands 8..10 (second lap, phase 0).
    for i in 3..11u32 {
        let c = Completion::from_bytes(slot(i % 8).as_slice().try_into().unwrap());
        assert_eq!(
            (c.command_id, c.status(), c.result, c.phase),
            (10 + i as u16, Some(Status::SUCCESS), u64::from(8 * (i + 1)), i < 8)
        );
    }
    let log = r.mem.message_log.lock().unwrap().clone();
    assert_eq!(check_phase_written_alone(&log, CQ_MSG, 8), 11);
}

#[test]
fn completion_bodies_are_in_place_with_the_old_phase_before_the_phase_pass_in_plain_memory() {
    let r = rig();
    let (cq, size) = (CQ, 8u32);
    *r.mem.watch.lock().unwrap() = Some((cq, size as usize * 32, Vec::new()));
    r.setup(0, size, 0);
    for i in 0..5u32 {
        r.submit(0, i, &fill(&r, 30 + i as u16, i, 8 * (i + 1)));
    }
    r.w32(doorbell(0, DB_SQ_TAIL), 5);
    r.wait_completion(0, 4, true);
    let snaps = r.mem.watch.lock().unwrap().take().unwrap().2;
    let fin = r.mem.get(cq, 5 * 32);
    // Some write access to the CQ began with every body final and every phase byte still old.
    let staged = snaps.iter().any(|s| {
        (0..5).all(|e| {
            let (now, want) = (&s[e * 32..e * 32 + 32], &fin[e * 32..e * 32 + 32]);
            now[7] == 0 && want[7] == 1 && (0..32).all(|i| i == 7 || now[i] == want[i])
        })
    });
    assert!(
        staged,
        "no write pass found the completion bodies in place before their phase bits ({} passes)",
        snaps.len()
    );
}

#[test]
fn a_driver_polling_phase_bits_never_sees_a_new_phase_with_an_old_body() {
    const SIZE: u32 = 64;
    const COMMANDS: u32 = SIZE * 40;
    let r = Arc::new(rig());
    r.setup(0, SIZE, QCTRL_POLL);
    let bad = Arc::new(Mutex::new(None));
    // The observer is the driver's completion loop: load the phase byte, fence (dma_rmb),
    // read the entry, check it, hand the slot back through the shadow CQ head.
    let observer = {
        let (r, bad) = (r.clone(), bad.clone());
        std::thread::spawn(move || {
            let m = r.mem.maps.iter().find(|m| m.iova == SQ).unwrap();
            let cq = m.mem.piece(CQ - SQ, u64::from(SIZE) * 32).unwrap();
            let (mut head, mut phase, mut seen) = (0u32, true, 0u32);
            let t = Instant::now();
            while seen < COMMANDS && t.elapsed() < Duration::from_secs(30) {
                let e = cq.sub(head as usize * 32, 32);
                let mut b = [0u8; 32];
                e.sub(7, 1).read_into(&mut b[7..8]);
                if (b[7] & 1 != 0) != phase {
                    std::hint::spin_loop();
                    continue;
                }
                fence(Ordering::Acquire);
                e.read_into(&mut b);
                let c = Completion::from_bytes(&b);
                if c.command_id != seen as u16 || c.result != u64::from(8 * (seen % 32 + 1)) {
                    *bad.lock().unwrap() = Some((seen, c));
                    return seen;
                }
                seen += 1;
                head = (head + 1) % SIZE;
                if head == 0 {
                    phase = !phase;
                }
                r.mem.put(SHADOW + 4, &head.to_le_bytes());
            }
            seen
        })
    };
    // The submitting side: one command at a time through the shadow SQ tail, never overrunning
    // the SQ (one slot stays free).
    let mut tail = 0u32;
    for i in 0..COMMANDS {
        let t = Instant::now();
        while (tail + 1) % SIZE == r.r32(queue_reg(0, Q_SQ_HEAD)) {
            assert!(t.elapsed() < Duration::from_secs(10), "device stalled at command {i}");
            std::thread::yield_now();
        }
        if bad.lock().unwrap().is_some() {
            break;
        }
        // The list slot follows the SQ slot: a slot is reused only after its command ran.
        r.submit(0, tail, &fill(&r, i as u16, tail, 8 * (i % 32 + 1)));
        tail = (tail + 1) % SIZE;
        fence(Ordering::SeqCst);
        r.mem.put(SHADOW, &tail.to_le_bytes());
    }
    let seen = observer.join().unwrap();
    assert_eq!(
        *bad.lock().unwrap(),
        None,
        "the observer saw a new phase with an old body"
    );
    assert_eq!(seen, COMMANDS);
}

#[test]
fn poll_mode_reads_a_shadow_doorbell_in_message_backed_memory() {
    let r = rig();
    r.w64(queue_reg(0, Q_SQ_BASE), SQ);
    r.w64(queue_reg(0, Q_CQ_BASE), CQ);
    r.w32(queue_reg(0, Q_SQ_SIZE), 4);
    r.w32(queue_reg(0, Q_CQ_SIZE), 4);
    r.w64(queue_reg(0, Q_SHADOW_BASE), MSG + 0xF000);
    r.w32(REG_CTRL, CTRL_ENABLE);
    r.w32(queue_reg(0, Q_CTRL), QCTRL_ENABLE | QCTRL_POLL);
    let nop = |id| Command::new(Opcode::Nop, id, DmaRange::default(), DmaRange::default());
    r.submit(0, 0, &nop(1));
    r.submit(0, 1, &nop(2));
    r.mem.put(MSG + 0xF000, &2u32.to_le_bytes());
    assert_eq!(r.wait_completion(0, 1, true).command_id, 2);
    assert_eq!(r.completion(0, 0).command_id, 1);
}
