//! Text as Paddock quotes it: cut to a number of characters, never inside
//! one; and the characters it refuses for hiding themselves.

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

/// A character that changes how the text around it shows without showing
/// itself: those that turn its direction (U+202E makes `exe.txt` of
/// `txt.exe`), zero-width spaces and joiners of words, line and paragraph
/// separators, the byte-order mark. (Not the zero-width (non-)joiners
/// some scripts and emoji are written with.)
pub fn is_hidden_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
    )
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
