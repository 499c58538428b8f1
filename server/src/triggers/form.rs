//! The form bodies email and text message senders post: URL-encoded
//! (`application/x-www-form-urlencoded`) or multipart (`multipart/form-data`,
//! with files). Read as it arrives, within [`Limits`]: the text is capped,
//! and files past what is kept are read through and listed with their
//! size, so an email with a huge attachment still brings its text.

use app::domain::AppError;
use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// Most parts (fields and files) a form may hold.
const PARTS_MAX: usize = 1000;

/// What a URL-encoded form's field names and separators may add to its
/// text.
const NAMES_ENCODED_MAX: usize = 64 * 1024;

/// How a form is encoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Encoding {
    UrlEncoded,
    Multipart,
}

impl Encoding {
    fn media_type(self) -> &'static str {
        match self {
            Self::UrlEncoded => "application/x-www-form-urlencoded",
            Self::Multipart => "multipart/form-data",
        }
    }
}

/// A content type's media type, lower case, without its parameters.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// What a form may hold.
pub struct Limits {
    /// The whole body.
    pub body: u64,
    /// The text of all its fields.
    pub text: usize,
    /// Files kept: how many, and their bytes together; the rest are
    /// listed without their bytes.
    pub files: usize,
    pub file_bytes: usize,
}

/// A file of a multipart form.
#[derive(Debug)]
pub struct FormFile {
    /// The file's own name, as the sender gives it.
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// Its bytes, if it was within what is kept.
    pub data: Option<Bytes>,
}

/// A form's text fields, in order, and its files.
#[derive(Debug, Default)]
pub struct Form {
    pub fields: Vec<(String, String)>,
    pub files: Vec<FormFile>,
}

impl Form {
    /// A form of text fields alone (the senders' tests make theirs so).
    #[cfg(test)]
    pub fn of(fields: &[(&str, &str)]) -> Self {
        Self {
            fields: fields
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            files: Vec::new(),
        }
    }

    /// The first value of field `name` (empty if there is none).
    pub fn get(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The bytes it keeps: its fields, and the files it stored.
    pub fn kept_bytes(&self) -> usize {
        let fields: usize = self.fields.iter().map(|(n, v)| n.len() + v.len()).sum();
        let files: usize = self
            .files
            .iter()
            .filter_map(|f| f.data.as_ref())
            .map(Bytes::len)
            .sum();
        fields + files
    }

    /// The fields as the prompt templates see them (`payload`): each name
    /// with its first value.
    pub fn payload(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (name, value) in &self.fields {
            if !map.contains_key(name) {
                map.insert(name.clone(), value.clone().into());
            }
        }
        serde_json::Value::Object(map)
    }
}

/// Reads a form encoded as one of `accepted`, or why not: 415 for another
/// content type, 413 past the limits, 400 for one that is not what it
/// says.
pub async fn read(
    content_type: Option<&str>,
    body: Body,
    accepted: &[Encoding],
    limits: &Limits,
) -> Result<Form, AppError> {
    let media = media_type(content_type);
    let encoding = accepted
        .iter()
        .copied()
        .find(|e| e.media_type() == media)
        .ok_or_else(|| {
            let names: Vec<&str> = accepted.iter().map(|e| e.media_type()).collect();
            AppError::UnsupportedMedia(format!(
                "This sender posts a form: Content-Type: {}.",
                names.join(" or ")
            ))
        })?;
    match encoding {
        Encoding::UrlEncoded => {
            // Its text is counted decoded, as a multipart form's is: each
            // byte of it is at most three encoded (`%E3`), and a sender
            // repeats an email's text in several fields.
            let encoded_max = (limits.text.saturating_mul(3))
                .saturating_add(NAMES_ENCODED_MAX)
                .min(usize::try_from(limits.body).unwrap_or(usize::MAX));
            let body = match Limited::new(body, encoded_max).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                    return Err(text_too_large(limits))
                }
                Err(e) => {
                    return Err(AppError::Invalid(format!(
                        "The form could not be read: {e}."
                    )))
                }
            };
            let fields: Vec<(String, String)> = form_urlencoded::parse(&body)
                .take(PARTS_MAX + 1)
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            if fields.len() > PARTS_MAX {
                return Err(too_many());
            }
            if fields.iter().map(|(_, v)| v.len()).sum::<usize>() > limits.text {
                return Err(text_too_large(limits));
            }
            Ok(Form {
                fields,
                files: Vec::new(),
            })
        }
        Encoding::Multipart => {
            let boundary =
                multer::parse_boundary(content_type.unwrap_or_default()).map_err(|e| {
                    AppError::Invalid(format!("The multipart form has no boundary: {e}."))
                })?;
            multipart(body, boundary, limits).await
        }
    }
}

fn too_many() -> AppError {
    AppError::Invalid(format!("A form holds at most {PARTS_MAX} parts."))
}

fn text_too_large(limits: &Limits) -> AppError {
    AppError::TooLarge(format!(
        "A form's text is at most {} KiB.",
        limits.text / 1024
    ))
}

async fn multipart(body: Body, boundary: String, limits: &Limits) -> Result<Form, AppError> {
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limits.body));
    let mut parts =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let bad = |e: multer::Error| match e {
        multer::Error::StreamSizeExceeded { limit } => AppError::TooLarge(format!(
            "A delivery to this trigger is at most {} MiB.",
            limit / (1024 * 1024)
        )),
        e => AppError::Invalid(format!("The multipart form is malformed: {e}.")),
    };
    let mut form = Form::default();
    let (mut text, mut kept) = (0usize, 0usize);
    while let Some(mut part) = parts.next_field().await.map_err(bad)? {
        if form.fields.len() + form.files.len() >= PARTS_MAX {
            return Err(too_many());
        }
        let field = part.name().unwrap_or_default().to_owned();
        let Some(name) = file_name(&part) else {
            let mut value = BytesMut::new();
            while let Some(chunk) = part.chunk().await.map_err(bad)? {
                text += chunk.len();
                if text > limits.text {
                    return Err(text_too_large(limits));
                }
                value.extend_from_slice(&chunk);
            }
            // Text in another charset than UTF-8 is read as far as it is
            // UTF-8: what a prompt can hold.
            form.fields
                .push((field, String::from_utf8_lossy(&value).into_owned()));
            continue;
        };
        let content_type = part
            .content_type()
            .map_or_else(|| "application/octet-stream".to_owned(), |m| m.to_string());
        // Kept while it fits; past that, read through and only counted.
        let keeping = form.files.iter().filter(|f| f.data.is_some()).count() < limits.files;
        let mut data = keeping.then(BytesMut::new);
        let mut size = 0u64;
        while let Some(chunk) = part.chunk().await.map_err(bad)? {
            size += chunk.len() as u64;
            if let Some(bytes) = &mut data {
                if kept + bytes.len() + chunk.len() > limits.file_bytes {
                    data = None;
                } else {
                    bytes.extend_from_slice(&chunk);
                }
            }
        }
        let data = data.map(BytesMut::freeze);
        kept += data.as_ref().map_or(0, Bytes::len);
        form.files.push(FormFile {
            name,
            content_type,
            size,
            data,
        });
    }
    Ok(form)
}

/// A file part's name, `None` for a text field: what multer reads of its
/// `Content-Disposition` (`filename="…"`), else its `filename*` (RFC 5987:
/// `UTF-8''caf%C3%A9.pdf`), which multer passes over, else nothing (a name
/// that is not UTF-8): still a file, whose bytes are no text field's.
fn file_name(part: &multer::Field<'_>) -> Option<String> {
    if let Some(name) = part.file_name() {
        return Some(name.to_owned());
    }
    let disposition = part
        .headers()
        .get(axum::http::header::CONTENT_DISPOSITION)?;
    let disposition = String::from_utf8_lossy(disposition.as_bytes());
    let lower = disposition.to_ascii_lowercase();
    if !lower.contains("filename") {
        return None;
    }
    let extended = lower.find("filename*=").and_then(|at| {
        let value = disposition[at + "filename*=".len()..].split(';').next()?;
        let encoded = value.trim().trim_matches('"').splitn(3, '\'').nth(2)?;
        percent_decoded(encoded)
    });
    Some(extended.unwrap_or_default())
}

/// `text` with its `%XX` escapes decoded, read as UTF-8 (lossily).
fn percent_decoded(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.bytes();
    while let Some(b) = rest.next() {
        match b {
            b'%' => {
                let hex = [rest.next()?, rest.next()?];
                bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b => bytes.push(b),
        }
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        body: 4096,
        text: 64,
        files: 2,
        file_bytes: 16,
    };

    async fn read_from(ct: Option<&str>, body: &'static [u8]) -> Result<Form, AppError> {
        read(
            ct,
            Body::from(body),
            &[Encoding::Multipart, Encoding::UrlEncoded],
            &LIMITS,
        )
        .await
    }

    #[tokio::test]
    async fn forms_are_read_as_their_content_type_says_within_limits() {
        let url = read_from(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            b"Body=hi+there%21&From=%2B1555&Body=again",
        )
        .await
        .unwrap();
        assert_eq!(url.get("Body"), "hi there!");
        assert_eq!(url.get("From"), "+1555");
        assert_eq!(url.get("None"), "");
        assert_eq!(url.payload()["Body"], "hi there!");

        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nHello\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"a1\"; filename=\"a.txt\"\r\n\
            Content-Type: text/plain\r\n\r\nfile body\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"a2\"; filename=\"big.bin\"\r\n\r\n\
            0123456789abcdef0123\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"a3\"; filename=\"c.txt\"\r\n\r\nc\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"a4\"; filename=\"d.txt\"\r\n\r\nd\r\n\
            --XyZ--\r\n";
        let multi = read_from(Some("multipart/form-data; boundary=XyZ"), body)
            .await
            .unwrap();
        assert_eq!(multi.get("subject"), "Hello");
        let files: Vec<(&str, u64, Option<&[u8]>)> = multi
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.size, f.data.as_deref()))
            .collect();
        assert_eq!(
            files,
            [
                ("a.txt", 9, Some(&b"file body"[..])),
                ("big.bin", 20, None),
                ("c.txt", 1, Some(&b"c"[..])),
                ("d.txt", 1, None),
            ],
            "kept within the bytes and the count; the rest counted"
        );
        // Named as RFC 5987 says, which multer passes over, or with a name
        // that is not UTF-8: files all the same, not text.
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a1\"; \
            filename*=UTF-8''caf%C3%A9.txt\r\n\r\n0123456789012345678901234567890123456789\
            0123456789012345678901234567890123456789\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"a2\"; filename=\"\xff.txt\"\r\n\r\nb\r\n\
            --XyZ--\r\n";
        let named = read_from(Some("multipart/form-data; boundary=XyZ"), body)
            .await
            .unwrap();
        let files: Vec<(&str, u64)> = named
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.size))
            .collect();
        assert_eq!(files, [("café.txt", 80), ("", 1)]);
        assert!(named.fields.is_empty());

        let refused = |ct: Option<&'static str>, body: &'static [u8]| async move {
            read_from(ct, body).await.unwrap_err().status()
        };
        assert_eq!(refused(Some("application/json"), b"{}").await, 415);
        assert_eq!(refused(None, b"a=b").await, 415);
        assert_eq!(refused(Some("multipart/form-data"), b"x").await, 400);
        assert_eq!(
            refused(
                Some("multipart/form-data; boundary=XyZ"),
                b"--XyZ\r\nbroken"
            )
            .await,
            400
        );
        let long_text = b"--XyZ\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n\
            0123456789012345678901234567890123456789012345678901234567890123456789\r\n--XyZ--\r\n";
        assert_eq!(
            refused(Some("multipart/form-data; boundary=XyZ"), long_text).await,
            413
        );
        let huge: &'static [u8] = Box::leak(
            [
                &b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"h\"\r\n\r\n"[..],
                &[b'x'; 5000][..],
                &b"\r\n--XyZ--\r\n"[..],
            ]
            .concat()
            .into_boxed_slice(),
        );
        assert_eq!(
            refused(Some("multipart/form-data; boundary=XyZ"), huge).await,
            413
        );
        // URL-encoded text counts as it is decoded: 64 bytes encoded as
        // 192 are within the limit, 65 are not.
        let encoded = |n: usize| -> &'static [u8] {
            Box::leak(
                format!("t={}", "%C3%A9".repeat(n / 2))
                    .into_bytes()
                    .into_boxed_slice(),
            )
        };
        let within = read_from(Some("application/x-www-form-urlencoded"), encoded(64))
            .await
            .unwrap();
        assert_eq!(within.get("t"), "é".repeat(32));
        assert_eq!(
            refused(Some("application/x-www-form-urlencoded"), encoded(66)).await,
            413
        );
        let many: &'static str = Box::leak("a=1&".repeat(PARTS_MAX + 1).into_boxed_str());
        let err = read(
            Some("application/x-www-form-urlencoded"),
            Body::from(many),
            &[Encoding::UrlEncoded],
            &Limits {
                text: 1 << 20,
                ..LIMITS
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.status(), 400);
    }
}
