//! A program whose unit tests exercise what the Unikraft elfloader supports (threads, channels, files in /tmp).
//! Test names are chosen so that none is a substring of another: `cargo test -- alpha` selects exactly one.

fn main() {
    println!("ukrun-loader-check: run `cargo test`");
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;

    #[test]
    fn alpha_thread_channel() {
        let (tx, rx) = mpsc::channel();
        let worker = thread::spawn(move || {
            for i in 1..=10u32 {
                tx.send(i * i).unwrap();
            }
        });
        let sum: u32 = rx.iter().sum();
        worker.join().unwrap();
        assert_eq!(sum, 385);
    }

    #[test]
    fn beta_tmp_file() {
        // The elfloader's ramfs starts empty: /tmp has to be created (a no-op on a host).
        let dir = std::env::temp_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("ukrun-loader-beta-{}.txt", std::process::id()));
        std::fs::write(&path, b"written inside the unikernel\n").unwrap();
        let back = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back, b"written inside the unikernel\n");
    }

    #[test]
    fn gamma_arith() {
        let expected = if cfg!(feature = "fail") { 5 } else { 4 };
        assert_eq!(2 + 2, expected, "gamma fails on purpose under --features fail");
    }
}
