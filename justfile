# phyr — PCIe test bench for DMA-mapping code. `just --list` shows the recipes.

set positional-arguments

# The guest driver is linked statically (glibc, crt-static) in its own target dir so the
# flags never invalidate the host build.
guest_target := "x86_64-unknown-linux-gnu"

# Boot a guest with the phyr endpoints (provisions QEMU and the kernel on first use). Try: just run --help
run *args: build
    ./target/release/phyr-harness run "$@"

# All cargo tests, then the guest suite on the backports and stable kernels; ends with "N passed, N failed".
test *args: build
    ./target/release/phyr-harness test --cargo "$@"

# Randomized lists and injected faults over two guests and one device (QEMU killed mid-run),
# every byte checked; ends "N commands, N faults injected, N corrupted bytes (seed S)".
# Try: just soak --minutes 2 [--seed S]
soak *args: build
    ./target/release/phyr-harness soak "$@"

# Inspect device-side DMA traces of the last run (or a given run directory). Try: just trace --help
trace *args:
    cargo build --release -p phyr-harness
    ./target/release/phyr-harness trace "$@"

# Benchmarks: protocol latency/throughput, DMA engine vs memcpy, tracing cost, trace writer.
bench:
    cargo bench --workspace

# Coverage-guided fuzzing of every parser for SECONDS in all (nightly toolchain; see fuzz/README.md).
fuzz seconds="60":
    fuzz/run.sh {{seconds}}

# Provision QEMU, busybox, the guest kernels (backports, stable) and what building modules for
# them takes, without booting. `just provision --refresh` moves the kernel pins to Debian's newest.
provision *args: build
    ./target/release/phyr-harness provision "$@"

# Host binaries (release) and the static guest driver.
build:
    cargo build --release -p phyr-device -p phyr-harness
    RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p phyr-driver --target {{guest_target}} --target-dir target/guest

# Lints as CI wants them: formatting (rustfmt.toml) and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
