//! The session's Files view: its workspace's folders (breadcrumbs to go
//! up), a file shown with highlighting, a download of any file or of the
//! whole workspace, and, for those who may operate the session, an upload
//! form that also takes files dropped on it, and a file's or a folder's
//! deletion (asked again first).
//!
//! Where it is (the folder, the file shown, an upload's error) lives in the
//! page's address (`?view=files&dir=…&file=…`), so every link and the
//! upload form work without JavaScript, a reload keeps the place, and a
//! link to a file can be shared.

use super::super::form::{PANEL, PRIMARY, SECONDARY};
use super::super::ErrorNote;
use crate::accounts::Access;
use crate::api::files::{list_files, view_file, workspace_disk, DeleteFile};
use crate::domain::{SessionId, SessionStatus};
use crate::files::{
    archive_url, download_url, files_view_url, folder_url, format_size, parent, DiskUse,
    FileContent, FileEntry, FileView, FilesChanged,
};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

#[component]
pub(super) fn FilesView(
    id: SessionId,
    access: Memo<Access>,
    status: Memo<SessionStatus>,
    /// What just changed in the workspace, live.
    changed: ReadSignal<Option<FilesChanged>>,
) -> impl IntoView {
    let query = use_query_map();
    let dir = Memo::new(move |_| query.read().get("dir").unwrap_or_default());
    let file = Memo::new(move |_| query.read().get("file"));
    // Counted up when a change touches the folder shown (an entry of it,
    // it or a folder it is in), or the file; at most every
    // `RELOAD_AT_MOST_EVERY`, as a build changes files all the time.
    let (folder_changes, file_changes) = (Throttled::new(), Throttled::new());
    Effect::new(move |_| {
        let Some(changes) = changed.get() else { return };
        let touches = |shown: &str| {
            changes.more
                || changes
                    .paths
                    .iter()
                    .any(|p| p == shown || shown.starts_with(&format!("{p}/")))
        };
        let folder = dir.get_untracked();
        if touches(&folder) || changes.paths.iter().any(|p| parent(p) == folder) {
            folder_changes.count();
        }
        if file.get_untracked().is_some_and(|f| touches(&f)) {
            file_changes.count();
        }
    });
    let upload_error = move || query.read().get("error").map(|code| upload_refused(&code));
    let delete = ServerAction::<DeleteFile>::new();
    // Uploads done from this page.
    let uploads = RwSignal::new(0u32);
    // Listed again as files change in it, when the agent starts or ends a
    // turn (a sandbox without the agent says no changes), and after a
    // deletion or an upload.
    let entries = Resource::new(
        move || {
            (
                dir.get(),
                status.get(),
                delete.version().get(),
                folder_changes.get(),
                uploads.get(),
            )
        },
        move |(d, ..)| list_files(id.to_string(), d),
    );
    let disk = Resource::new(
        move || (status.get(), delete.version().get(), uploads.get()),
        move |_| workspace_disk(id.to_string()),
    );
    let shown = Resource::new(
        move || (file.get(), file_changes.get(), delete.version().get()),
        move |(f, ..)| async move {
            match f {
                Some(f) => view_file(id.to_string(), f).await.map(Some),
                None => Ok(None),
            }
        },
    );
    view! {
        <section aria-labelledby="files-heading" class="space-y-3" data-testid="files">
            <h2 id="files-heading" class="sr-only">"Files"</h2>
            <div class="flex flex-wrap items-center justify-between gap-2">
                <Breadcrumbs id dir />
                <div class="flex flex-wrap items-center gap-3">
                    <Suspense>
                        {move || Suspend::new(async move { disk.await.ok().map(|use_| view! { <Disk use_ /> }) })}
                    </Suspense>
                    <a href=archive_url(id) download data-testid="download-archive" class=SECONDARY>
                        "Download all (.tar.gz)"
                    </a>
                </div>
            </div>
            {move || upload_error().map(|m| view! { <ErrorNote message=m.to_owned() /> })}
            {move || delete.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            // Reloaded in place (the list shown until the new one is there).
            <Transition fallback=|| view! { <p class="text-sm text-zinc-500">"Loading files…"</p> }>
                {move || {
                    let may_delete = (access.get() >= Access::Operate).then_some(delete);
                    Suspend::new(async move {
                        match entries.await {
                            Ok(list) => view! { <Listing id dir=dir.get_untracked() list delete=may_delete /> }.into_any(),
                            Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                        }
                    })
                }}
            </Transition>
            {move || (access.get() >= Access::Operate).then(|| view! { <Upload id dir uploads /> })}
            <Transition>
                {move || Suspend::new(async move {
                    match shown.await {
                        Ok(Some(v)) => view! { <Shown id view=v /> }.into_any(),
                        Ok(None) => ().into_any(),
                        Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// How often a changing workspace reloads the folder or the file shown, at
/// most.
const RELOAD_AT_MOST_EVERY: std::time::Duration = std::time::Duration::from_millis(300);

/// A count of changes that moves at most every [`RELOAD_AT_MOST_EVERY`]:
/// those within it are counted once, at its end.
#[derive(Clone, Copy)]
struct Throttled {
    count: RwSignal<u64>,
    due: StoredValue<bool>,
}

impl Throttled {
    fn new() -> Self {
        Self {
            count: RwSignal::new(0),
            due: StoredValue::new(false),
        }
    }

    fn count(self) {
        if self.due.get_value() {
            return;
        }
        self.due.set_value(true);
        set_timeout(
            move || {
                self.due.set_value(false);
                self.count.update(|n| *n += 1);
            },
            RELOAD_AT_MOST_EVERY,
        );
    }

    fn get(self) -> u64 {
        self.count.get()
    }
}

/// Why an upload the browser posted was refused, from the error's type the
/// server sent back (the page's own words: nothing from the address is
/// shown).
fn upload_refused(code: &str) -> &'static str {
    match code {
        "too_large" => "That upload is too large: at most 64 MiB, all its files together.",
        "workspace_full" => {
            "That upload does not fit: the workspace is full (its disk limit is reached). \
             Delete files to make room."
        }
        "forbidden" => "You may not upload here: this session is shared with you to watch.",
        "unavailable" => "Too many uploads are running right now: try again in a moment.",
        "invalid_request" => {
            "That upload was refused: a file name or its folder leaves the workspace, runs \
             into a link, a pipe or a folder, or no file was chosen."
        }
        _ => "That upload failed. Try again; the server's log says why.",
    }
}

/// How much of its disk the workspace uses; marked when nearly full.
#[component]
fn Disk(use_: DiskUse) -> impl IntoView {
    let nearly_full = use_
        .limit_bytes
        .is_some_and(|limit| use_.used_bytes.saturating_mul(10) >= limit.saturating_mul(9));
    let tone = if nearly_full {
        "font-medium text-red-700 dark:text-red-400"
    } else {
        "text-zinc-500 dark:text-zinc-400"
    };
    view! {
        <span data-testid="disk-use" data-full=nearly_full.to_string() class=format!("text-xs tabular-nums {tone}")>
            "Disk: "{use_.describe()}
        </span>
    }
}

/// The workspace, then each folder down to `dir`, each a link.
#[component]
fn Breadcrumbs(id: SessionId, dir: Memo<String>) -> impl IntoView {
    let crumbs = move || {
        let dir = dir.get();
        let mut path = String::new();
        let mut crumbs = vec![("workspace".to_owned(), String::new())];
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            crumbs.push((part.to_owned(), path.clone()));
        }
        crumbs
    };
    view! {
        <nav aria-label="Folder" data-testid="breadcrumbs" class="flex flex-wrap items-center gap-1 font-mono text-sm">
            {move || crumbs().into_iter().map(|(name, path)| view! {
                <span class="text-zinc-400">"/"</span>
                <a href=files_view_url(id, &path, None) class="hover:underline">{name}</a>
            }).collect_view()}
        </nav>
    }
}

#[component]
fn Listing(
    id: SessionId,
    dir: String,
    list: Vec<FileEntry>,
    /// For those who may operate the session.
    delete: Option<ServerAction<DeleteFile>>,
) -> impl IntoView {
    if list.is_empty() {
        return view! {
            <p data-testid="files-empty" class="rounded-lg border border-dashed border-zinc-300 p-4 text-center text-sm text-zinc-500 dark:border-zinc-700 dark:text-zinc-400">
                "Nothing here yet: the agent's files appear as it works, and you can upload some."
            </p>
        }
        .into_any();
    }
    let up = (!dir.is_empty()).then(|| files_view_url(id, parent(&dir), None));
    view! {
        <ul class=format!("divide-y divide-zinc-100 p-0 text-sm dark:divide-zinc-800 {PANEL}") data-testid="file-list">
            {up.map(|href| view! {
                <li class="px-4 py-2"><a href=href class="font-mono hover:underline">".."</a></li>
            })}
            {list.into_iter().map(|e| {
                let open = if e.is_dir {
                    files_view_url(id, &e.path, None)
                } else {
                    files_view_url(id, &dir, Some(&e.path))
                };
                let kind = if e.is_dir { "folder" } else { "file" };
                let remove = delete.map(|delete| view! {
                    <DeleteEntry id path=e.path.clone() name=e.name.clone() is_dir=e.is_dir delete />
                });
                view! {
                    <li class="flex items-center justify-between gap-3 px-4 py-2" data-testid="file-entry" data-kind=kind>
                        <a href=open class="min-w-0 truncate font-mono hover:underline">
                            {if e.is_dir { format!("{}/", e.name) } else { e.name.clone() }}
                        </a>
                        <span class="flex shrink-0 items-center gap-3 text-xs text-zinc-500 dark:text-zinc-400">
                            {(!e.is_dir).then(|| view! {
                                <span class="tabular-nums">{format_size(e.size)}</span>
                                <a href=download_url(id, &e.path) download class="hover:underline" aria-label=format!("Download {}", e.name)>"Download"</a>
                            })}
                            {remove}
                        </span>
                    </li>
                }
            }).collect_view()}
        </ul>
    }
    .into_any()
}

/// Deletes a file or a folder, once asked again.
#[component]
fn DeleteEntry(
    id: SessionId,
    path: String,
    name: String,
    is_dir: bool,
    delete: ServerAction<DeleteFile>,
) -> impl IntoView {
    let asking = RwSignal::new(false);
    let question = if is_dir {
        format!("Delete {name}/ and all it holds?")
    } else {
        format!("Delete {name}?")
    };
    let label = format!("Delete {name}");
    view! {
        <Show
            when=move || asking.get()
            fallback=move || view! {
                <button type="button" class="hover:underline" aria-label=label.clone() data-testid="delete-entry" on:click=move |_| asking.set(true)>
                    "Delete"
                </button>
            }
        >
            <span class="flex items-center gap-2" data-testid="confirm-delete">
                <span>{question.clone()}</span>
                <button
                    type="button"
                    class="font-semibold text-red-700 hover:underline dark:text-red-400"
                    data-testid="confirm-delete-yes"
                    on:click={
                        let path = path.clone();
                        move |_| {
                            delete.dispatch(DeleteFile { id: id.to_string(), path: path.clone() });
                            asking.set(false);
                        }
                    }
                >"Delete"</button>
                <button type="button" class="hover:underline" on:click=move |_| asking.set(false)>"Keep"</button>
            </span>
        </Show>
    }
}

/// A file, highlighted, or why it is not shown.
#[component]
fn Shown(id: SessionId, view: FileView) -> impl IntoView {
    let body = match view.content {
        FileContent::Text(html) => view! { <div class="overflow-x-auto text-sm" data-testid="file-content" inner_html=html></div> }.into_any(),
        FileContent::Binary => view! { <p class="text-sm text-zinc-500">"A binary file: download it to open it."</p> }.into_any(),
        FileContent::TooLarge => view! { <p class="text-sm text-zinc-500">"Too large to show here: download it to open it."</p> }.into_any(),
    };
    view! {
        <article class=format!("space-y-2 {PANEL}") data-testid="file-view">
            <header class="flex flex-wrap items-center justify-between gap-2">
                <h3 class="font-mono text-sm font-semibold" data-testid="file-path">{view.path.clone()}</h3>
                <span class="flex items-center gap-3 text-xs text-zinc-500 dark:text-zinc-400">
                    <span class="tabular-nums">{format_size(view.size)}</span>
                    <a href=download_url(id, &view.path) download class="hover:underline">"Download"</a>
                </span>
            </header>
            {body}
        </article>
    }
}

/// Files into the folder shown: chosen, or dropped on the form (which
/// then sends itself). Sent by the page (`uploads` counts those done), so
/// that it stays as it is: its terminals open, a prompt being typed; a
/// page not running yet posts the form, and is sent back to the Files view.
#[component]
fn Upload(id: SessionId, dir: Memo<String>, uploads: RwSignal<u32>) -> impl IntoView {
    let form = NodeRef::<leptos::html::Form>::new();
    let input = NodeRef::<leptos::html::Input>::new();
    let dragging = RwSignal::new(false);
    let failed = RwSignal::new(None::<&'static str>);
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        #[cfg(feature = "hydrate")]
        if let (Some(files), Some(input), Some(form)) = (
            ev.data_transfer().and_then(|d| d.files()),
            input.get_untracked(),
            form.get_untracked(),
        ) {
            if files.length() > 0 {
                input.set_files(Some(&files));
                let _ = form.request_submit();
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (form, input);
    };
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        #[cfg(feature = "hydrate")]
        {
            ev.prevent_default();
            let Some(form) = form.get_untracked() else {
                return;
            };
            failed.set(None);
            leptos::task::spawn_local(async move {
                match send_upload(id, &form).await {
                    Ok(()) => {
                        form.reset();
                        uploads.update(|n| *n += 1);
                    }
                    Err(kind) => failed.set(Some(upload_refused(&kind))),
                }
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (ev, uploads, failed);
    };
    view! {
        <form
            node_ref=form
            method="post"
            enctype="multipart/form-data"
            action=folder_url(id)
            on:submit=on_submit
            data-testid="upload-form"
            on:dragover=move |ev: leptos::ev::DragEvent| { ev.prevent_default(); dragging.set(true); }
            on:dragleave=move |_| dragging.set(false)
            on:drop=on_drop
            class=move || format!(
                "flex flex-wrap items-center gap-3 border-dashed {PANEL} {}",
                if dragging.get() { "border-amber-500 bg-amber-50 dark:bg-amber-950" } else { "" },
            )
        >
            <input type="hidden" name="dir" value=move || dir.get() />
            <label class="text-sm font-medium" for="upload-input">"Upload to this folder"</label>
            <input node_ref=input id="upload-input" data-testid="upload-input" type="file" name="file" multiple required class="text-sm" />
            <button type="submit" class=PRIMARY>"Upload"</button>
            <span class="text-xs text-zinc-500 dark:text-zinc-400">"or drop files here"</span>
            {move || failed.get().map(|m| view! { <ErrorNote message=m.to_owned() /> })}
        </form>
    }
}

/// Sends the upload form's files: `Err` with the type of the error that
/// refused them (as [`upload_refused`] words it).
#[cfg(feature = "hydrate")]
async fn send_upload(id: SessionId, form: &leptos::web_sys::HtmlFormElement) -> Result<(), String> {
    use wasm_bindgen::JsCast;
    let unsent = String::new;
    let data = leptos::web_sys::FormData::new_with_form(form).map_err(|_| unsent())?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&data);
    let answered = wasm_bindgen_futures::JsFuture::from(
        window().fetch_with_str_and_init(&folder_url(id), &init),
    )
    .await
    .map_err(|_| unsent())?;
    let response: web_sys::Response = answered.dyn_into().map_err(|_| unsent())?;
    if response.ok() {
        return Ok(());
    }
    let text = match response.text() {
        Ok(text) => wasm_bindgen_futures::JsFuture::from(text).await.ok(),
        Err(_) => None,
    };
    let kind = text
        .and_then(|t| t.as_string())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|body| body["error"]["type"].as_str().map(str::to_owned));
    Err(kind.unwrap_or_default())
}
