//! The form bodies email and text message senders post: URL-encoded
//! (`application/x-www-form-urlencoded`) or multipart (`multipart/form-data`,
//! with files), read from a body already within its size cap, bounded in
//! how many parts it may hold.

use app::domain::AppError;
use bytes::Bytes;

/// Most parts (fields and files) a form may hold.
const PARTS_MAX: usize = 1000;

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

/// A file of a multipart form.
#[derive(Debug)]
pub struct FormFile {
    /// The part's name (`attachment-1`).
    pub field: String,
    /// The file's own name, as the sender gives it.
    pub name: String,
    pub content_type: String,
    pub data: Bytes,
}

/// A form's text fields, in order, and its files.
#[derive(Debug, Default)]
pub struct Form {
    pub fields: Vec<(String, String)>,
    pub files: Vec<FormFile>,
}

impl Form {
    /// The first value of field `name` (empty if there is none).
    pub fn get(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
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
/// content type, 400 for one that is not what it says.
pub async fn read(
    content_type: Option<&str>,
    body: Bytes,
    accepted: &[Encoding],
) -> Result<Form, AppError> {
    let media = content_type
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
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
            let fields: Vec<(String, String)> = form_urlencoded::parse(&body)
                .take(PARTS_MAX + 1)
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            if fields.len() > PARTS_MAX {
                return Err(too_many());
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
            multipart(body, boundary).await
        }
    }
}

fn too_many() -> AppError {
    AppError::Invalid(format!("A form holds at most {PARTS_MAX} parts."))
}

async fn multipart(body: Bytes, boundary: String) -> Result<Form, AppError> {
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut parts = multer::Multipart::new(stream, boundary);
    let mut form = Form::default();
    let bad =
        |e: multer::Error| AppError::Invalid(format!("The multipart form is malformed: {e}."));
    while let Some(part) = parts.next_field().await.map_err(bad)? {
        if form.fields.len() + form.files.len() >= PARTS_MAX {
            return Err(too_many());
        }
        let field = part.name().unwrap_or_default().to_owned();
        let file = part.file_name().map(str::to_owned);
        let content_type = part
            .content_type()
            .map_or_else(|| "application/octet-stream".to_owned(), |m| m.to_string());
        let data = part.bytes().await.map_err(bad)?;
        match file {
            Some(name) => form.files.push(FormFile {
                field,
                name,
                content_type,
                data,
            }),
            // Text in another charset than UTF-8 is read as far as it is
            // UTF-8: what a prompt can hold.
            None => form
                .fields
                .push((field, String::from_utf8_lossy(&data).into_owned())),
        }
    }
    Ok(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn forms_are_read_as_their_content_type_says() {
        let url = read(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            Bytes::from_static(b"Body=hi+there%21&From=%2B1555&Body=again"),
            &[Encoding::UrlEncoded],
        )
        .await
        .unwrap();
        assert_eq!(url.get("Body"), "hi there!");
        assert_eq!(url.get("From"), "+1555");
        assert_eq!(url.get("None"), "");
        assert_eq!(url.payload()["Body"], "hi there!");

        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nHello\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"attachment1\"; filename=\"a.txt\"\r\n\
            Content-Type: text/plain\r\n\r\nfile body\r\n--XyZ--\r\n";
        let multi = read(
            Some("multipart/form-data; boundary=XyZ"),
            Bytes::from(body),
            &[Encoding::Multipart, Encoding::UrlEncoded],
        )
        .await
        .unwrap();
        assert_eq!(multi.get("subject"), "Hello");
        assert_eq!(multi.files.len(), 1);
        assert_eq!(multi.files[0].name, "a.txt");
        assert_eq!(multi.files[0].field, "attachment1");
        assert_eq!(&multi.files[0].data[..], b"file body");

        let refused = |ct: Option<&'static str>, body: &'static [u8]| async move {
            read(ct, Bytes::from_static(body), &[Encoding::Multipart])
                .await
                .unwrap_err()
                .status()
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
        let many = "a=1&".repeat(PARTS_MAX + 1);
        let err = read(
            Some("application/x-www-form-urlencoded"),
            Bytes::from(many),
            &[Encoding::UrlEncoded],
        )
        .await
        .unwrap_err();
        assert_eq!(err.status(), 400);
    }
}
