//! Logs go to stderr (stdout is for tables and JSON); `--debug` turns on debug lines,
//! `RUST_LOG` overrides both.

pub fn init(debug: bool) {
    // The HTTP stack's own debug lines (one per socket event) would drown ours.
    let default = if debug {
        "debug,ureq=warn,ureq_proto=warn,rustls=warn"
    } else {
        "warn"
    };
    let env = env_logger::Env::default().default_filter_or(default);
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp(None)
        .format_target(false)
        .try_init();
}
