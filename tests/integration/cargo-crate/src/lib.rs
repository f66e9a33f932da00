//! Three libtest tests; `gamma_checks_feature` fails when the `fail` feature is on.

pub fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_adds() {
        assert_eq!(add(2, 2), 4);
    }

    #[test]
    fn beta_multiplies() {
        assert_eq!(3 * 4, 12);
    }

    #[test]
    fn gamma_checks_feature() {
        assert!(!cfg!(feature = "fail"), "built with --features fail");
    }
}
