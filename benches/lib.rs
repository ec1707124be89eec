//! Benchmarks only: see `benches/` (criterion) and `compare.sh` (iperf3
//! through switchd and through the kernel, in one run).
