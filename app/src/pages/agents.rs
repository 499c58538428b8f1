//! Agents: the agent templates a person may use, a form for a new one and
//! an import; and one agent's page, to edit it (each save a new version),
//! duplicate, export, delete, see its versions and start a session from it;
//! its skills, its triggers ([`super::agent_triggers`]) and its
//! notifications ([`super::notifications`]).

use super::agent_triggers::{ShownSecret, Triggers};
use super::form::{submitted, PageTitle, INPUT, PANEL, PRIMARY, SECONDARY};
use super::notifications::{Notifications, ShownEndpoint};
use super::settings_form::{settings_of, SettingsFields};
use super::{ErrorNote, Missing, When};
use crate::agents::{AgentTemplate, TemplateDraft, TemplateSummary, DESCRIPTION_MAX_CHARS};
use crate::api::agents::{
    get_template, list_templates, template_versions, DeleteTemplate, DuplicateTemplate,
    ImportTemplate, RemoveSkill, SaveSkill, SaveTemplate,
};
use crate::domain::{AppError, PermissionMode, NAME_MAX_CHARS};
use crate::skills::Skill;
use leptos::prelude::*;
use leptos::server_fn::ServerFn as _;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;
use leptos_router::hooks::{use_navigate, use_params_map};

/// Where a saved, duplicated or imported agent opens.
fn open_when_done(
    value: MappedSignal<Option<Result<AgentTemplate, AppError>>>,
) -> impl Fn(Option<()>) + 'static {
    let navigate = use_navigate();
    move |_| {
        if let Some(Ok(t)) = value.get() {
            navigate(&format!("/agents/{}", t.id), Default::default());
        }
    }
}

#[component]
pub fn AgentsPage() -> impl IntoView {
    let templates = Resource::new(|| (), |_| list_templates());
    let save = ServerAction::<SaveTemplate>::new();
    let import = ServerAction::<ImportTemplate>::new();
    Effect::new(open_when_done(save.value()));
    Effect::new(open_when_done(import.value()));
    let submit_import = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Ok(data) = leptos::web_sys::FormData::new_with_form(&event_target(&ev)) else {
            return;
        };
        import.dispatch(ImportTemplate {
            file: data.get("file").as_string().unwrap_or_default(),
        });
    };
    view! {
        <PageTitle title="Agents" about="Templates a session starts from: model, instructions, permissions, limits, environment and secrets, saved once and used again. Every save is a new version; sessions keep the version they were made from." />
        <div class="grid gap-6 md:grid-cols-[1fr_22rem]">
            <section class="min-w-0" aria-label="Agents">
                <Suspense fallback=|| view! { <p class="text-sm text-zinc-500">"Loading agents…"</p> }>
                    {move || Suspend::new(async move {
                        match templates.await {
                            Ok(list) if list.is_empty() => view! {
                                <p data-testid="agents-empty" class="rounded-lg border border-dashed border-zinc-300 p-6 text-center text-sm text-zinc-500 dark:border-zinc-700">"No agents yet: make one with the form, or import a template file."</p>
                            }.into_any(),
                            Ok(list) => view! {
                                <ul data-testid="agent-list" class="divide-y divide-zinc-200 overflow-hidden rounded-lg border border-zinc-200 bg-white dark:divide-zinc-800 dark:border-zinc-800 dark:bg-zinc-900">
                                    {list.into_iter().map(|t| view! { <AgentRow t /> }).collect_view()}
                                </ul>
                            }.into_any(),
                            Err(e) => view! { <ErrorNote message=e.to_string() /> }.into_any(),
                        }
                    })}
                </Suspense>
            </section>
            <div class="space-y-4">
                <section class=PANEL aria-labelledby="new-agent-heading">
                    <h2 id="new-agent-heading" class="mb-3 font-semibold">"New agent"</h2>
                    <AgentForm save initial=TemplateDraft::default() id=None />
                </section>
                <section class=PANEL aria-labelledby="import-heading">
                    <h2 id="import-heading" class="mb-2 font-semibold">"Import"</h2>
                    <form on:submit=submit_import class="space-y-2">
                        <label for="import-file" class="text-sm font-medium">"A template file (JSON or TOML), pasted"</label>
                        <textarea id="import-file" name="file" rows="5" required spellcheck="false" class=format!("font-mono {INPUT}")></textarea>
                        <button type="submit" class=SECONDARY data-testid="import-agent" disabled=move || import.pending().get()>"Import"</button>
                        {move || import.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
                    </form>
                </section>
            </div>
        </div>
    }
}

#[component]
fn AgentRow(t: TemplateSummary) -> impl IntoView {
    let model = t
        .model
        .unwrap_or_else(|| crate::domain::DEFAULT_MODEL.to_owned());
    let engine = t.engine;
    view! {
        <li class="flex flex-wrap items-center gap-x-4 gap-y-1 px-4 py-3" data-testid="agent-row">
            <div class="min-w-0 flex-1">
                <A href=format!("/agents/{}", t.id) attr:class="font-medium hover:underline" attr:data-testid="agent-name">{t.name}</A>
                <p class="truncate text-sm text-zinc-500 dark:text-zinc-400">{t.description}</p>
                <p class="text-xs text-zinc-500" data-testid="agent-meta">{format!("v{} · {engine} · {model} · saved ", t.version)}<When at=t.updated_at />{format!(" by {}", t.updated_by)}</p>
            </div>
            <A href=format!("/?agent={}", t.id) attr:class=SECONDARY attr:data-testid="start-from-agent">"Start a session"</A>
        </li>
    }
}

/// The agent form: name, description and the session settings; a new
/// agent without `id`, the next version of that one with it (refused if it
/// was saved again since `version`, the one the form shows).
#[component]
fn AgentForm(
    save: ServerAction<SaveTemplate>,
    initial: TemplateDraft,
    id: Option<String>,
    #[prop(optional)] version: Option<i64>,
) -> impl IntoView {
    let prefix = if id.is_some() { "agent-edit" } else { "agent" };
    let editing = id.is_some();
    let submit = {
        let id = id.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let Ok(data) = leptos::web_sys::FormData::new_with_form(&event_target(&ev)) else {
                return;
            };
            save.dispatch(SaveTemplate {
                id: id.clone(),
                version,
                name: data.get("name").as_string().unwrap_or_default(),
                description: data.get("description").as_string(),
                settings: settings_of(&data),
                triggers_require: data.get("triggers_require").as_string(),
            });
        }
    };
    view! {
        <form action=SaveTemplate::PATH method="post" on:submit=submit class="space-y-3" data-testid=format!("{prefix}-form")>
            {id.map(|id| view! { <input type="hidden" name="id" value=id /> })}
            {version.map(|v| view! { <input type="hidden" name="version" value=v /> })}
            <div>
                <label for=format!("{prefix}-name") class="text-sm font-medium">"Name"</label>
                <input id=format!("{prefix}-name") name="name" required maxlength=NAME_MAX_CHARS autocomplete="off" value=initial.name.clone() class=INPUT />
            </div>
            <div>
                <label for=format!("{prefix}-description") class="text-sm font-medium">"Description"</label>
                <textarea id=format!("{prefix}-description") name="description" rows="2" maxlength=DESCRIPTION_MAX_CHARS placeholder="What it is for" class=INPUT>{initial.description.clone()}</textarea>
            </div>
            <SettingsFields initial=initial.session.clone() prefix />
            <div>
                <label for=format!("{prefix}-triggers-require") class="text-sm font-medium">"Sessions its triggers start"</label>
                <select id=format!("{prefix}-triggers-require") name="triggers_require" class=INPUT>
                    <option value="" selected=initial.triggers_require.is_none()>"as each trigger says"</option>
                    <option value=PermissionMode::Ask.as_str() selected=initial.triggers_require == Some(PermissionMode::Ask)>"always ask before tools (or read-only)"</option>
                    <option value=PermissionMode::ReadOnly.as_str() selected=initial.triggers_require == Some(PermissionMode::ReadOnly)>"always read-only"</option>
                </select>
            </div>
            <button type="submit" class=format!("w-full {PRIMARY}") disabled=move || save.pending().get() data-testid=format!("{prefix}-save")>
                {if editing { "Save as a new version" } else { "Save agent" }}
            </button>
            {move || save.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
        </form>
    }
}

#[component]
pub fn AgentPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let save = ServerAction::<SaveTemplate>::new();
    let duplicate = ServerAction::<DuplicateTemplate>::new();
    let delete = ServerAction::<DeleteTemplate>::new();
    let save_skill = ServerAction::<SaveSkill>::new();
    let remove_skill = ServerAction::<RemoveSkill>::new();
    // This agent and the newest version of it a save here made: read
    // again only after one succeeded, so that a refused save leaves what
    // was typed in the form.
    let changed = Memo::new(move |before: Option<&(String, i64)>| {
        let id = id();
        let saved = [save.value(), save_skill.value(), remove_skill.value()]
            .iter()
            .filter_map(|v| v.get().and_then(Result::ok))
            .filter(|t| t.id.to_string() == id)
            .map(|t| t.version)
            .max()
            .unwrap_or(0);
        match before {
            Some((was, newest)) if *was == id => (id, saved.max(*newest)),
            _ => (id, saved),
        }
    });
    // Secrets shown once, kept across a save's drawing of the agent, and
    // forgotten for another agent.
    let (trigger_secret, endpoint_secret): (ShownSecret, ShownEndpoint) =
        (RwSignal::new(None), RwSignal::new(None));
    Effect::new(move |was: Option<String>| {
        let now = id();
        if was.is_some_and(|was| was != now) {
            trigger_secret.set(None);
            endpoint_secret.set(None);
        }
        now
    });
    let template = Resource::new(move || changed.get(), |(id, _)| get_template(id));
    let versions = Resource::new(move || changed.get(), |(id, _)| template_versions(id));
    Effect::new(open_when_done(duplicate.value()));
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(())) = delete.value().get() {
            navigate("/agents", Default::default());
        }
    });
    view! {
        <Suspense fallback=|| view! { <p class="text-sm text-zinc-500">"Loading agent…"</p> }>
            {move || Suspend::new(async move {
                let t = match template.await {
                    Ok(t) => t,
                    Err(AppError::NotFound(_)) => return view! { <Missing what="Agent" /> }.into_any(),
                    Err(e) => return view! { <ErrorNote message=e.to_string() /> }.into_any(),
                };
                let id = t.id.to_string();
                let (dup_id, del_id) = (id.clone(), id.clone());
                view! {
                    <leptos_meta::Title text=format!("{} · Agents · Paddock", t.draft.name) />
                    <div class="mb-4 flex flex-wrap items-center gap-2">
                        <h1 class="min-w-0 flex-1 break-words text-xl font-semibold" data-testid="agent-title">{t.draft.name.clone()}</h1>
                        <span class="text-sm text-zinc-500" data-testid="agent-version">{format!("version {}", t.version)}</span>
                        <A href=format!("/?agent={id}") attr:class=PRIMARY attr:data-testid="start-from-agent">"Start a session"</A>
                        <button type="button" class=SECONDARY data-testid="duplicate-agent" disabled=move || duplicate.pending().get() on:click=move |_| { duplicate.dispatch(DuplicateTemplate { id: dup_id.clone() }); }>"Duplicate"</button>
                        <a href=format!("/api/templates/{id}/export?format=toml") download class=SECONDARY data-testid="export-toml">"Export TOML"</a>
                        <a href=format!("/api/templates/{id}/export?format=json") download class=SECONDARY data-testid="export-json">"Export JSON"</a>
                        <button type="button" class=SECONDARY data-testid="delete-agent" on:click=move |_| {
                            let sure = leptos::web_sys::window().and_then(|w| w.confirm_with_message("Delete this agent and its versions? Sessions made from it keep their settings.").ok()).unwrap_or(false);
                            if sure { delete.dispatch(DeleteTemplate { id: del_id.clone() }); }
                        }>"Delete"</button>
                    </div>
                    {move || duplicate.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
                    {move || delete.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
                    <div class="grid gap-6 md:grid-cols-[1fr_16rem]">
                        <div class="space-y-6">
                            <section class=PANEL aria-label="Edit">
                                <AgentForm save initial=t.draft.clone() id=Some(id.clone()) version=t.version />
                            </section>
                            <Skills id=id.clone() skills=t.draft.session.skills.clone() save=save_skill remove=remove_skill />
                            <Triggers template=id.clone() secret=trigger_secret />
                            <Notifications of="template" id=id.clone() made=endpoint_secret />
                        </div>
                        <section aria-labelledby="versions-heading">
                            <h2 id="versions-heading" class="mb-2 text-sm font-semibold uppercase tracking-wide text-zinc-500">"Versions"</h2>
                            <Suspense>
                                {move || Suspend::new(async move {
                                    versions.await.unwrap_or_default().into_iter().map(|v| view! {
                                        <p class="text-sm" data-testid="agent-version-row">{format!("v{} · {} · ", v.version, v.updated_by)}<When at=v.updated_at /></p>
                                    }).collect_view()
                                })}
                            </Suspense>
                        </section>
                    </div>
                }.into_any()
            })}
        </Suspense>
    }
}

/// A new skill's `SKILL.md`, to start from.
const SKILL_EXAMPLE: &str = "---\nname: my-skill\ndescription: What it does, and when to use it.\n---\n\n# My skill\n\nThe steps to follow.\n";

/// Why a skill's zip the browser posted was refused, from the error's type
/// the server sent back (the page's own words).
fn skill_refused(code: &str) -> &'static str {
    match code {
        "too_large" => "That zip is too large: a skill holds at most 1 MiB unpacked.",
        "invalid_request" => {
            "That zip was refused: it needs a SKILL.md with a name and a description, at its \
             top or in its one folder, and no paths that leave the folder, links or more \
             than 64 files."
        }
        "forbidden" => "You may not change this agent.",
        _ => "That upload failed. Try again; the server's log says why.",
    }
}

/// An agent's skills: each with its description and files, to edit or
/// remove; a new one written here, or uploaded as a zip.
#[component]
fn Skills(
    id: String,
    skills: Vec<Skill>,
    save: ServerAction<SaveSkill>,
    remove: ServerAction<RemoveSkill>,
) -> impl IntoView {
    let query = use_query_map();
    let upload_error = move || {
        query
            .read()
            .get("skill_error")
            .map(|code| skill_refused(&code))
    };
    let submit = {
        let id = id.clone();
        move |ev: leptos::ev::SubmitEvent| {
            let Some(field) = submitted(&ev) else { return };
            save.dispatch(SaveSkill {
                id: id.clone(),
                markdown: field("markdown").unwrap_or_default(),
                replaces: field("replaces"),
            });
        }
    };
    let listed = skills.into_iter().filter_map(|s| {
        let h = s.header().ok()?;
        let (remove_id, name) = (id.clone(), h.name.clone());
        let submit = submit.clone();
        Some(view! {
            <li class="space-y-1 py-3" data-testid="skill">
                <div class="flex flex-wrap items-center gap-2">
                    <code class="font-mono font-semibold" data-testid="skill-name">{h.name.clone()}</code>
                    <span class="text-xs text-zinc-500">{format!("{} file{}", s.files.len() + 1, if s.files.is_empty() { "" } else { "s" })}</span>
                    <button type="button" class=format!("ml-auto {SECONDARY}") data-testid="remove-skill"
                        on:click=move |_| { remove.dispatch(RemoveSkill { id: remove_id.clone(), name: name.clone() }); }>"Remove"</button>
                </div>
                <p class="text-sm text-zinc-600 dark:text-zinc-300">{h.description.clone()}</p>
                <details class="text-sm">
                    <summary class="cursor-pointer text-xs text-zinc-500">"Edit SKILL.md"</summary>
                    <form action=SaveSkill::PATH method="post" on:submit=submit class="mt-2 space-y-2">
                        <input type="hidden" name="id" value=id.clone() />
                        <input type="hidden" name="replaces" value=h.name.clone() />
                        <textarea name="markdown" rows="8" class=format!("font-mono text-xs {INPUT}")>{s.markdown.clone()}</textarea>
                        <button type="submit" class=SECONDARY>"Save skill"</button>
                    </form>
                </details>
            </li>
        })
    }).collect_view();
    view! {
        <section class=format!("space-y-3 {PANEL}") aria-labelledby="skills-heading" data-testid="skills">
            <div>
                <h2 id="skills-heading" class="font-semibold">"Skills"</h2>
                <p class="text-sm text-zinc-500 dark:text-zinc-400">"Instructions for kinds of tasks, each a SKILL.md (a name and a description, then the steps) with files beside it. The agent sees the names and descriptions, and loads a skill when a task calls for it, in either engine."</p>
            </div>
            {upload_error().map(|m| view! { <ErrorNote message=m.to_owned() /> })}
            {move || save.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            {move || remove.value().get().and_then(Result::err).map(|e| view! { <ErrorNote message=e.to_string() /> })}
            <ul class="divide-y divide-zinc-200 dark:divide-zinc-800">{listed}</ul>
            <details class="text-sm" data-testid="new-skill">
                <summary class="cursor-pointer font-medium">"Write a skill"</summary>
                <form action=SaveSkill::PATH method="post" on:submit=submit class="mt-2 space-y-2">
                    <input type="hidden" name="id" value=id.clone() />
                    <textarea name="markdown" rows="8" aria-label="SKILL.md" class=format!("font-mono text-xs {INPUT}")>{SKILL_EXAMPLE}</textarea>
                    <button type="submit" class=PRIMARY data-testid="save-skill">"Add skill"</button>
                </form>
            </details>
            <form action=format!("/api/templates/{id}/skills") method="post" enctype="multipart/form-data" class="flex flex-wrap items-end gap-2" data-testid="upload-skill">
                <label class="min-w-0 flex-1 text-sm font-medium">"Upload a skill (.zip)"
                    <input type="file" name="file" accept=".zip,application/zip" required class="mt-1 block w-full text-sm" />
                </label>
                <button type="submit" class=SECONDARY>"Upload"</button>
            </form>
        </section>
    }
}
