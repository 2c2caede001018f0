//! The static agent binary bind-mounted into every sandbox as
//! `/.sandpit/sandpit` and started as `/.sandpit/sandpit agent ...`.

fn main() -> std::process::ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "agent") {
        args.remove(0);
    }
    sandpit_agent::main_with_args(args)
}
