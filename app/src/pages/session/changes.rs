//! The session's Changes view (`?view=changes&file=…`), for a session
//! cloned from a git repository: the files the agent changed since the
//! start, one file's diff, and for those who may operate the session a
//! commit of everything to its working branch, a push of that branch, and
//! a link to open a pull request for it.

use super::super::form::{submitted, successes, INPUT, PANEL, PRIMARY, SECONDARY};
use super::super::ErrorNote;
use crate::accounts::Access;
use crate::api::changes::{change_diff, list_changes, CommitChanges, PushChanges};
use crate::changes::{changes_view_url, ChangedFile, Changes, FileDiff, COMMIT_MESSAGE_MAX_BYTES};
use crate::domain::{SessionId, SessionStatus};
use leptos::prelude::*;
use leptos::server_fn::ServerFn as _;
use leptos_router::hooks::use_query_map;

fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}

#[component]
pub(super) fn ChangesView(
    id: SessionId,
    access: Memo<Access>,
    status: Memo<SessionStatus>,
) -> impl IntoView {
    let query = use_query_map();
    let file = Memo::new(move |_| query.read().get("file"));
    let commit = ServerAction::<CommitChanges>::new();
    let push = ServerAction::<PushChanges>::new();
    let (committed, pushed) = (successes(commit.value()), successes(push.value()));
    // Kept here: the summary is made again as turns start and end, and the
    // message being typed goes on.
    let message = RwSignal::new(String::new());
    Effect::new(move |_| {
        if committed.get() > 0 {
            message.set(String::new());
        }
    });
    // Listed again as turns start and end, and after a commit or a push.
    let changes = Resource::new(
        move || (status.get(), committed.get(), pushed.get()),
        move |_| list_changes(id.to_string()),
    );
    let diff = Resource::new(
        move || (file.get(), status.get(), committed.get()),
        move |(f, _, _)| async move {
            match f {
                Some(f) => change_diff(id.to_string(), f).await.map(Some),
                None => Ok(None),
            }
        },
    );
    view! {
        <section aria-labelledby="changes-heading" class="space-y-3" data-testid="changes">
            <h2 id="changes-heading" class="sr-only">"Changes"</h2>
            <Suspense fallback=|| view! { <p class="text-sm text-zinc-500">"Loading changes…"</p> }>
                {move || Suspend::new(async move {
                    match changes.await {
                        Ok(c) => view! { <Summary id changes=c access commit push message /> }.into_any(),
                        Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                    }
                })}
            </Suspense>
            <Suspense>
                {move || Suspend::new(async move {
                    match diff.await {
                        Ok(Some(d)) => view! { <Diff diff=d /> }.into_any(),
                        Ok(None) => ().into_any(),
                        Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn Summary(
    id: SessionId,
    changes: Changes,
    access: Memo<Access>,
    commit: ServerAction<CommitChanges>,
    push: ServerAction<PushChanges>,
    message: RwSignal<String>,
) -> impl IntoView {
    let committed = changes.head_commit != changes.base_commit;
    let on_commit = move |ev: leptos::ev::SubmitEvent| {
        let Some(field) = submitted(&ev) else { return };
        commit.dispatch(CommitChanges {
            id: id.to_string(),
            message: field("message").unwrap_or_default(),
        });
    };
    let on_push = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        push.dispatch(PushChanges { id: id.to_string() });
    };
    view! {
        <div class=format!("space-y-2 text-sm {PANEL}") data-testid="changes-summary">
            <p>
                "Branch "<code class="font-mono" data-testid="changes-branch">{changes.branch.clone()}</code>
                " of "<code class="font-mono break-all">{changes.remote.clone()}</code>
            </p>
            <p class="text-xs text-zinc-500 dark:text-zinc-400">
                "Started at "<code class="font-mono">{short(&changes.base_commit)}</code>
                {committed.then(|| view! {
                    "; newest commit "<code class="font-mono" data-testid="changes-head">{short(&changes.head_commit)}</code>
                })}
            </p>
            {changes.pull_request_url.clone().filter(|_| committed).map(|href| view! {
                <p><a href=href target="_blank" rel="noopener noreferrer" class="font-medium underline" data-testid="pull-request">"Open a pull request for the branch"</a></p>
            })}
        </div>
        <FileList id files=changes.files.clone() more=changes.more />
        {move || (access.get() >= Access::Operate).then(|| view! {
            <div class="grid gap-3 sm:grid-cols-2">
                <form action=CommitChanges::PATH method="post" on:submit=on_commit class=format!("space-y-2 {PANEL}") data-testid="commit-form">
                    <input type="hidden" name="id" value=id.to_string() />
                    <label for="commit-message" class="text-sm font-medium">"Commit every change to the branch"</label>
                    <textarea id="commit-message" name="message" rows="2" required maxlength=COMMIT_MESSAGE_MAX_BYTES placeholder="What the change does" class=INPUT
                        prop:value=move || message.get() on:input=move |ev| message.set(event_target_value(&ev))></textarea>
                    <button type="submit" class=PRIMARY disabled=move || commit.pending().get() || !changes.uncommitted data-testid="commit">"Commit"</button>
                    {move || commit.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
                </form>
                <form action=PushChanges::PATH method="post" on:submit=on_push class=format!("space-y-2 {PANEL}") data-testid="push-form">
                    <input type="hidden" name="id" value=id.to_string() />
                    <p class="text-sm font-medium">"Push the branch to the repository"</p>
                    <p class="text-xs text-zinc-500 dark:text-zinc-400">"Pushed by the server, with the saved token; the agent cannot push."</p>
                    <button type="submit" class=SECONDARY disabled=move || push.pending().get() || !committed data-testid="push">"Push branch"</button>
                    {move || push.value().get().map(|r| match r {
                        Ok(done) => view! { <p class="text-sm text-emerald-700 dark:text-emerald-400" data-testid="pushed">"Pushed "{short(&done.commit)}"."</p> }.into_any(),
                        Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                    })}
                </form>
            </div>
        })}
    }
}

#[component]
fn FileList(id: SessionId, files: Vec<ChangedFile>, more: usize) -> impl IntoView {
    if files.is_empty() {
        return view! {
            <p data-testid="changes-empty" class="rounded-lg border border-dashed border-zinc-300 p-4 text-center text-sm text-zinc-500 dark:border-zinc-700 dark:text-zinc-400">
                "No changes since the start."
            </p>
        }
        .into_any();
    }
    view! {
        <ul class=format!("divide-y divide-zinc-100 p-0 text-sm dark:divide-zinc-800 {PANEL}") data-testid="changed-files">
            {files.into_iter().map(|f| {
                let kind = f.kind.as_str();
                let badge = match kind {
                    "deleted" => "text-red-700 dark:text-red-400",
                    "modified" => "text-amber-700 dark:text-amber-400",
                    _ => "text-emerald-700 dark:text-emerald-400",
                };
                view! {
                    <li class="flex items-center justify-between gap-3 px-4 py-2" data-testid="changed-file" data-kind=kind>
                        <a href=changes_view_url(id, Some(&f.path)) class="min-w-0 truncate font-mono hover:underline">{f.path.clone()}</a>
                        <span class=format!("shrink-0 text-xs font-medium {badge}")>{kind}</span>
                    </li>
                }
            }).collect_view()}
            {(more > 0).then(|| view! {
                <li class="px-4 py-2 text-xs text-zinc-500 dark:text-zinc-400" data-testid="changes-more">
                    {format!("and {more} more, not listed here")}
                </li>
            })}
        </ul>
    }
    .into_any()
}

/// A unified diff, each line coloured by what it does.
#[component]
fn Diff(diff: FileDiff) -> impl IntoView {
    let body = match (diff.unified, diff.note) {
        (Some(text), _) => {
            let lines: Vec<(String, &'static str)> = text
                .lines()
                .map(|l| {
                    let style = if l.starts_with("+++") || l.starts_with("---") {
                        "text-zinc-500"
                    } else if l.starts_with('+') {
                        "bg-emerald-50 text-emerald-900 dark:bg-emerald-950 dark:text-emerald-200"
                    } else if l.starts_with('-') {
                        "bg-red-50 text-red-900 dark:bg-red-950 dark:text-red-200"
                    } else if l.starts_with("@@") {
                        "text-sky-700 dark:text-sky-400"
                    } else {
                        ""
                    };
                    (l.to_owned(), style)
                })
                .collect();
            view! {
                <pre class="overflow-x-auto text-xs leading-5" data-testid="diff-text">
                    {lines.into_iter().map(|(l, style)| view! { <div class=style>{l}"\n"</div> }).collect_view()}
                </pre>
            }
            .into_any()
        }
        (None, Some(note)) => view! { <p class="text-sm text-zinc-500">{note}</p> }.into_any(),
        (None, None) => ().into_any(),
    };
    view! {
        <article class=format!("space-y-2 {PANEL}") data-testid="diff">
            <h3 class="font-mono text-sm font-semibold">{diff.path.clone()}" "<span class="text-xs font-normal text-zinc-500">{diff.kind.as_str()}</span></h3>
            {body}
        </article>
    }
}
