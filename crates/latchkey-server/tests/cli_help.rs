//! `latchkey user --help` describes each subcommand with its own doc comment (issue 15:
//! `import` was described as "Disable a user…" and `disable` as "Where sessions live…").

use std::process::Command;

/// The description `help` gives the subcommand `name` (the text after its name on its
/// line of the "Commands:" list).
fn description<'a>(help: &'a str, name: &str) -> &'a str {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .find_map(|line| {
            let rest = line.trim_start().strip_prefix(name)?;
            rest.starts_with(' ').then(|| rest.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in the commands of:\n{help}"))
}

#[test]
fn user_help_describes_every_subcommand_with_its_own_text() {
    let output = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["user", "--help"])
        .output()
        .expect("run latchkey user --help");
    assert!(output.status.success(), "latchkey user --help failed");
    let help = String::from_utf8(output.stdout).expect("help is UTF-8");
    let expected = [
        ("add", "Create a user"),
        ("list", "List users"),
        ("passwd", "Change a user's password"),
        ("import", "Import users with their existing password hashes"),
        ("disable", "Disable a user"),
        ("verify", "Mark a user's email address verified"),
    ];
    for (name, start) in expected {
        let text = description(&help, name);
        assert!(
            text.starts_with(start),
            "`user {name}` is described as {text:?}, expected {start:?}…"
        );
    }
    assert!(
        !help.contains("Where sessions live"),
        "a flattened option group's doc leaked into the commands:\n{help}"
    );
}
