//! The `nodepool` binary: parse the command line, set up logging, run, map the outcome to an
//! exit status. Everything else lives in the library so the tests can call it.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = nodepool::cli::Cli::parse();
    nodepool::logging::init(cli.debug);
    let exit = match nodepool::run(&cli) {
        Ok(()) => nodepool::exit::Exit::Ok.into(),
        Err(error) => {
            let exit = nodepool::exit::Exit::of(&error);
            nodepool::exit::report(&error);
            exit.into()
        }
    };
    // A run stopped by SIGTERM/SIGINT has printed its summary: now it dies of that signal.
    nodepool::interrupt::die_of_it();
    exit
}
