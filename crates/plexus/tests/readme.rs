//! The README's command-line tour, run as written: every line of the first `sh` block under
//! "## The command line" runs in bash, with `plexus` on PATH (a symlink to the binary under
//! test), `PLEXUS_BUS` naming a real broker and no `XDG_RUNTIME_DIR`. A line must exit 0, or the
//! code its comment gives as `# exit N`; a line ending in `&` runs in the background and is
//! stopped at the end.

mod cli_support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use cli_support::{Bus, wait_exit};

/// The commands of the tour, with the exit code each must end with (`None`: in the background).
fn tour() -> Vec<(String, Option<i32>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## The command line\n")
        .nth(1)
        .expect("a section \"## The command line\"");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a sh block in it");
    block
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let command = line.split(" # ").next().unwrap_or(line).trim_end();
            let expected = if command.ends_with('&') {
                None
            } else {
                Some(
                    line.split("# exit ")
                        .nth(1)
                        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                        .map_or(0, |code| code.parse().expect("an exit code")),
                )
            };
            (line.to_owned(), expected)
        })
        .collect()
}

/// A line running in bash in a process group of its own, so that what it leaves in the
/// background can be stopped with it.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.0.wait();
    }
}

#[test]
fn the_command_line_tour_runs_as_written() {
    let bus = Bus::start();
    let bin = bus.dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin dir");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_plexus"), bin.join("plexus")).expect("symlink");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tour = tour();
    assert!(
        tour.len() >= 10 && tour.iter().any(|(_, code)| *code == Some(69)),
        "the tour has its commands, an exit code among them: {tour:?}"
    );
    let mut groups = Vec::new();
    for (i, (line, expected)) in tour.iter().enumerate() {
        let log = |name: &str| {
            std::fs::File::create(bus.dir.path().join(format!("line{i}.{name}"))).expect("log")
        };
        let child = Command::new("bash")
            .args(["-c", line])
            .current_dir(bus.dir.path())
            .env("PATH", &path)
            .env("PLEXUS_BUS", bus.addr())
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null())
            .stdout(log("out"))
            .stderr(log("err"))
            .process_group(0)
            .spawn()
            .expect("bash");
        let mut group = Group(child);
        let status = wait_exit(&mut group.0, line);
        if let Some(code) = expected {
            let read = |name: &str| {
                std::fs::read_to_string(bus.dir.path().join(format!("line{i}.{name}")))
                    .unwrap_or_default()
            };
            assert_eq!(
                status.code(),
                Some(*code),
                "README line {line:?}\nstdout:\n{}\nstderr:\n{}",
                read("out"),
                read("err")
            );
        }
        groups.push(group);
    }
}
