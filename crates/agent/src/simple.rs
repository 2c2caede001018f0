//! Simple commands that need no shell.
//!
//! `bash -c 'ls -la /tmp'` parses the line, finds that it is one simple
//! command and executes `/usr/bin/ls` in place of itself. Starting bash for
//! that costs about 0.6 ms on the 2-core host (loading bash and its
//! libraries, reading the locale), a quarter of a `run("true")` round trip.
//! So a command line that bash would execute directly, with the same
//! arguments and environment, is executed directly, as GNU make does for
//! recipe lines without shell syntax. Everything else runs through the shell.
//!
//! A line qualifies when all of these hold:
//!
//! - the shell is bash (what `sh` is varies between images);
//! - it is words of plain characters (letters, digits and `_./:,+@%=-`)
//!   separated by spaces or tabs: nothing to quote, expand, glob, redirect or
//!   chain, no comment, and the first word is not an assignment;
//! - the first word is a path, or a name that is neither a bash keyword nor
//!   a builtin (except `true` and `false` without arguments, which do the
//!   same as the programs) and is found as an executable file in `PATH`,
//!   whose entries are all absolute;
//! - the environment has no variable that bash reads or rewrites at start
//!   (`BASH_ENV`, `SHELLOPTS`, exported functions, `PWD`, `OLDPWD`, `IFS`,
//!   `PPID`, ...), and `SHLVL` is unset or a plain number bash keeps.
//!
//! The program then gets what bash would give it: the words as `argv`, the
//! environment plus `PWD` (the physical working directory), `SHLVL` (bash
//! counts itself in and out again when it executes in place, so an unset one
//! becomes `0`) and `_` (the program's path). Only the variables' order
//! differs. If executing the program fails, the child executes the shell
//! instead ([`crate::process`]), so a failure reads as bash reports it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A command line to execute without the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Direct {
    /// The program bash would execute.
    pub program: PathBuf,
    /// Its arguments, `argv[0]` included: the command's words.
    pub args: Vec<String>,
    /// The environment bash would pass on.
    pub env: Vec<(OsString, OsString)>,
}

/// Bash's reserved words and builtins (bash 5.2, `compgen -k` and
/// `compgen -b`): the first word of a simple command that bash does not look
/// up in `PATH`.
const BASH_OWN: &[&str] = &[
    "!",
    ".",
    ":",
    "[",
    "[[",
    "]]",
    "{",
    "}",
    "alias",
    "bg",
    "bind",
    "break",
    "builtin",
    "caller",
    "case",
    "cd",
    "command",
    "compgen",
    "complete",
    "compopt",
    "continue",
    "coproc",
    "declare",
    "dirs",
    "disown",
    "do",
    "done",
    "echo",
    "elif",
    "else",
    "enable",
    "esac",
    "eval",
    "exec",
    "exit",
    "export",
    "false",
    "fc",
    "fg",
    "fi",
    "for",
    "function",
    "getopts",
    "hash",
    "help",
    "history",
    "if",
    "in",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "select",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "then",
    "time",
    "times",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "until",
    "wait",
    "while",
];

/// Builtins that, without arguments, do exactly what the program does.
const SAME_AS_PROGRAM: &[&str] = &["true", "false"];

/// Variables bash reads at start, or drops or rewrites before it executes
/// a program (besides `SHLVL` and `_`, handled apart). Names starting with
/// `BASH` (`BASH_ENV`, `BASHOPTS`, `BASH_FUNC_*`, ...) are included too.
const BASH_READS: &[&str] = &[
    "COMP_WORDBREAKS",
    "DIRSTACK",
    "EPOCHREALTIME",
    "EPOCHSECONDS",
    "EXECIGNORE",
    "FUNCNAME",
    "HISTCMD",
    "IFS",
    "LINENO",
    "OLDPWD",
    "OPTERR",
    "OPTIND",
    "POSIXLY_CORRECT",
    "PPID",
    "PS4",
    "PWD",
    "RANDOM",
    "SECONDS",
    "SHELLOPTS",
    "SRANDOM",
];

/// The highest `SHLVL` bash passes on unchanged.
const MAX_SHLVL: u32 = 998;

/// How bash would execute `command`, if it would execute one program in
/// place of itself; `None` when the shell must run it.
pub fn direct(
    shell: &Path,
    command: &str,
    env: &[(OsString, OsString)],
    cwd: &Path,
) -> Option<Direct> {
    if shell.file_name() != Some(OsStr::new("bash")) {
        return None;
    }
    let args = plain_words(command)?;
    if env.iter().any(|(key, _)| bash_reads(key)) {
        return None;
    }
    let shlvl = shell_level(env)?;
    let program = find_program(&args, env)?;
    let pwd = std::fs::canonicalize(cwd).ok()?;
    let mut env: Vec<_> = env
        .iter()
        .filter(|(key, _)| key != "SHLVL" && key != "_")
        .cloned()
        .collect();
    env.push(("PWD".into(), pwd.into_os_string()));
    env.push(("SHLVL".into(), shlvl.into()));
    env.push(("_".into(), program.clone().into_os_string()));
    Some(Direct { program, args, env })
}

/// The words of a line made only of plain words; `None` if anything in it
/// means something to the shell.
fn plain_words(command: &str) -> Option<Vec<String>> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"_./:,+@%=-".contains(&b);
    if !command.bytes().all(|b| plain(b) || b == b' ' || b == b'\t') {
        return None;
    }
    let words: Vec<String> = command
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let first = words.first()?;
    if first.contains('=') {
        return None;
    }
    Some(words)
}

/// Whether bash reads variable `key` at start, or drops or rewrites it.
fn bash_reads(key: &OsStr) -> bool {
    let name = key.as_bytes();
    name.starts_with(b"BASH") || BASH_READS.iter().any(|n| n.as_bytes() == name)
}

/// The `SHLVL` bash passes on, or `None` if bash would not pass the
/// environment's value on unchanged.
fn shell_level(env: &[(OsString, OsString)]) -> Option<String> {
    let Some((_, value)) = env.iter().find(|(key, _)| key == "SHLVL") else {
        return Some("0".into());
    };
    let text = value.to_str()?;
    let level: u32 = text.parse().ok()?;
    (level <= MAX_SHLVL && level.to_string() == text).then(|| text.to_string())
}

/// The file bash would execute for `args[0]`.
fn find_program(args: &[String], env: &[(OsString, OsString)]) -> Option<PathBuf> {
    let name = args[0].as_str();
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    if BASH_OWN.contains(&name) && !(SAME_AS_PROGRAM.contains(&name) && args.len() == 1) {
        return None;
    }
    let (_, path) = env.iter().find(|(key, _)| key == "PATH")?;
    let dirs: Vec<PathBuf> = std::env::split_paths(path).collect();
    if dirs.iter().any(|dir| !dir.is_absolute()) {
        return None;
    }
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn base() -> Vec<(OsString, OsString)> {
        env(&[("PATH", "/usr/local/bin:/usr/bin:/bin"), ("HOME", "/root")])
    }

    fn direct_of(command: &str, vars: &[(OsString, OsString)]) -> Option<Direct> {
        direct(Path::new("/bin/bash"), command, vars, Path::new("/"))
    }

    #[test]
    fn plain_lines_split_into_words() {
        let d = direct_of("  env\t-u HOME  A=b ", &base()).expect("direct");
        assert_eq!(d.args, ["env", "-u", "HOME", "A=b"]);
        assert!(d.program.ends_with("env"), "{:?}", d.program);
        assert!(direct_of("true", &base()).is_some());
    }

    #[test]
    fn shell_syntax_goes_to_the_shell() {
        for line in [
            "echo hi",
            "true x",
            "ls *",
            "ls ~",
            "a=b env",
            "env; env",
            "env | cat",
            "env > x",
            "env $HOME",
            "env 'a'",
            "env \\a",
            "env # c",
            "env\nenv",
            "env {a,b}",
            "env &",
            "cd /",
            "[ -e / ]",
            "no-such-program-here",
            "",
            "  ",
            "é",
        ] {
            assert_eq!(direct_of(line, &base()), None, "{line:?}");
        }
        assert_eq!(
            direct(Path::new("/bin/sh"), "env", &base(), Path::new("/")),
            None
        );
    }

    #[test]
    fn variables_bash_reads_go_to_the_shell() {
        for (key, value) in [
            ("BASH_ENV", "/x"),
            ("BASH_FUNC_env%%", "() { :; }"),
            ("SHELLOPTS", "xtrace"),
            ("PWD", "/"),
            ("IFS", "x"),
            ("SHLVL", "03"),
            ("SHLVL", "999"),
            ("SHLVL", "x"),
            ("PATH", "bin:/usr/bin"),
        ] {
            let mut vars = base();
            vars.retain(|(k, _)| k != key);
            vars.push((key.into(), value.into()));
            assert_eq!(direct_of("env", &vars), None, "{key}={value}");
        }
        let mut vars = base();
        vars.retain(|(k, _)| k != "PATH");
        assert_eq!(direct_of("env", &vars), None, "no PATH");
    }

    #[test]
    fn the_environment_gets_what_bash_adds() {
        let mut vars = base();
        vars.push(("SHLVL".into(), "3".into()));
        vars.push(("_".into(), "/old".into()));
        let d = direct_of("env", &vars).expect("direct");
        let get = |key: &str| {
            let found: Vec<_> = d.env.iter().filter(|(k, _)| k == key).collect();
            assert_eq!(found.len(), 1, "{key} once");
            found[0].1.clone()
        };
        assert_eq!(get("SHLVL"), "3");
        assert_eq!(get("PWD"), "/");
        assert_eq!(get("_"), d.program.as_os_str());
        assert_eq!(get("HOME"), "/root");
        let d = direct_of("./x/y", &base()).expect("a path is executed as is");
        assert_eq!(d.program, Path::new("./x/y"));
        let unset = direct_of("env", &base()).expect("direct");
        assert!(unset.env.contains(&("SHLVL".into(), "0".into())));
    }
}
