//! Text as Paddock quotes it: cut to a number of characters, never inside
//! one.

/// The first `max` characters of `text`, when it has more.
pub fn cut_chars(text: &str, max: usize) -> Option<&str> {
    text.char_indices().nth(max).map(|(at, _)| &text[..at])
}

/// `text` in at most `max` characters, with `…` after them when it had
/// more.
pub fn elided(text: &str, max: usize) -> String {
    match cut_chars(text, max) {
        Some(cut) => format!("{cut}…"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_whole_characters_only() {
        assert_eq!(cut_chars("héllo", 2), Some("hé"));
        assert_eq!(cut_chars("héllo", 5), None);
        assert_eq!(cut_chars("", 0), None);
        assert_eq!(elided("日本語です", 3), "日本語…");
        assert_eq!(elided("ok", 3), "ok");
    }
}
