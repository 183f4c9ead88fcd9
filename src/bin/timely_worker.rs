//! One worker process of the demo job on timely (see
//! `rescale::timely_cluster`); the multi-process tests start it.

use std::process::ExitCode;

fn main() -> ExitCode {
    match rescale::timely_cluster::worker_main(std::env::args().skip(1)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("timely_worker: {e}");
            ExitCode::FAILURE
        }
    }
}
