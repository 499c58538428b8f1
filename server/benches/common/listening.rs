//! Reading a started `paddock` server's address from its log (included by
//! the benches that start the real binary, with `#[path]`).

use std::io::BufRead;

/// The URL from the server's `listening on …` line; reads `log` up to it.
pub fn listening_url(log: &mut std::io::Lines<impl BufRead>) -> String {
    loop {
        let line = log.next().expect("paddock exited").unwrap();
        if let Some((_, url)) = line.split_once("listening on ") {
            return url.trim().to_owned();
        }
    }
}
