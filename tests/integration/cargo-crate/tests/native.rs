//! Tests that touch their surroundings, for tests/integration/cargo_linuxu.sh: under ukrun (linuxu) they must
//! behave exactly as they do natively. Run with `--test-threads 1` so libtest's output order is fixed.
//! `fails_with_panic` fails on purpose (with RUST_BACKTRACE=1 libtest shows its backtrace).

use std::io::Read;

#[test]
fn reads_fixture() {
    // cargo starts a test in its package directory; CARGO_MANIFEST_DIR names it too.
    let relative = std::fs::read_to_string("fixtures/data.txt").expect("fixtures/data.txt from the working directory");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let absolute = std::fs::read_to_string(format!("{dir}/fixtures/data.txt")).expect("the fixture by its absolute path");
    assert_eq!(relative, absolute);
    assert!(relative.starts_with("fixture line one\n"), "fixture: {relative:?}");
}

#[test]
fn checks_env() {
    assert_eq!(std::env::var("UKRUN_IT_VALUE").as_deref(), Ok("42"), "UKRUN_IT_VALUE");
    println!("RUST_BACKTRACE={}", std::env::var("RUST_BACKTRACE").unwrap_or_default());
}

#[test]
fn fails_with_panic() {
    let answer = 6 * 7;
    if answer == 42 {
        panic!("deliberate failure: answer {answer}");
    }
}

#[test]
fn reads_stdin() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).expect("read stdin");
    assert_eq!(input, "hello from stdin\n");
}

#[test]
fn writes_stderr() {
    eprintln!("a line on stderr");
    println!("a line on stdout");
}
