//! Prints its arguments (one per line) and exits with the status given as the last argument, if it is a number.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for (i, a) in args.iter().enumerate() {
        println!("arg {}: {}", i + 1, a);
    }
    let code = args
        .last()
        .and_then(|a| a.parse::<i32>().ok())
        .unwrap_or(0);
    println!("exiting with {}", code);
    std::process::exit(code);
}
