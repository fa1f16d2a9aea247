# phyr — PCIe test bench for DMA-mapping code. `just --list` shows the recipes.

set positional-arguments

# Build everything and boot a guest with the phyr endpoints (provisions QEMU and the kernel on first use).
run *args:
    cargo build --release -p phyr-device -p phyr-harness
    ./target/release/phyr-harness run "$@"

# All cargo tests, then the guest integration suite under QEMU; ends with "N passed, N failed".
test *args:
    cargo build --release -p phyr-device -p phyr-harness
    ./target/release/phyr-harness test "$@"

# Inspect device-side DMA traces of the last run (or a given run directory).
trace *args:
    cargo build --release -p phyr-harness
    ./target/release/phyr-harness trace "$@"

# Benchmarks: protocol latency/throughput, DMA engine throughput vs memcpy, tracing cost.
bench:
    cargo bench --workspace

# Provision QEMU, the guest kernel and busybox into the cache without booting.
provision:
    cargo build --release -p phyr-harness
    ./target/release/phyr-harness provision

# Lints as CI wants them.
lint:
    cargo clippy --workspace --all-targets -- -D warnings
