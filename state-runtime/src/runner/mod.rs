//! A local job runner: sources reading a partitioned log, a keyed operator at
//! any parallelism, aligned checkpoints, and restarts at a new parallelism.

pub mod log;
