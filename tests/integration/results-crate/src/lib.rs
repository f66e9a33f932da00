//! Tests run in name order with --test-threads=1: fails_eq, m_aborts (feature `abort`), panics_plain, passes,
//! skipped.

#[cfg(test)]
mod tests {
    #[test]
    fn passes() {
        println!("hello from passes");
    }

    #[test]
    fn fails_eq() {
        println!("about to compare");
        assert_eq!(1 + 1, 3, "math is broken");
    }

    #[test]
    #[ignore]
    fn skipped() {}

    #[test]
    fn panics_plain() {
        panic!("boom");
    }

    #[cfg(feature = "abort")]
    #[test]
    fn m_aborts() {
        println!("about to abort");
        std::process::abort();
    }
}
