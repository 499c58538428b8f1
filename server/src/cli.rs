//! The `paddock` command: with no subcommand it serves; `paddock user …`
//! manages accounts without a browser (a headless first admin, a forgotten
//! password), and `paddock credentials rotate-master-key` re-seals the
//! credential store under a new key. Those work on the database
//! (`DATABASE_URL`) directly, and may run beside a serving Paddock;
//! `paddock health` asks a serving one whether it is ready.

use crate::auth::Auth;
use crate::config::Config;
use crate::hub::Hub;
use crate::store::accounts::UserChange;
use crate::store::{self, Store};
use crate::vault::{self, MasterKey, Vault};
use anyhow::Context;
use app::accounts::{AuditAction, CredentialId, CredentialKind, CredentialScope, Role};
use clap::{Parser, Subcommand};
use std::io::{BufRead, IsTerminal, Read, Write};

#[derive(Parser, Debug)]
#[command(
    name = "paddock",
    version,
    about = "Run Claude agents in closed sandboxes"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Store(StoreCommand),
    /// Asks the Paddock serving on this machine (at PADDOCK_ADDR, or on
    /// PORT) whether it is ready: `GET /readyz`, exit status 0 when it
    /// answers 200. A container's HEALTHCHECK runs it.
    Health,
    /// Makes deliveries' prompts and conversation keys, for the server
    /// (see `template_renderers`): not for people.
    #[command(hide = true)]
    RenderTriggerTemplates,
}

/// The commands that work on the database.
#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the credential store.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Adds an account. The password is read from standard input (one
    /// line); on a terminal, one is generated and printed once.
    Add {
        login: String,
        /// Display name [default: the login].
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, value_parser = parse_role, default_value = "member")]
        role: Role,
    },
    /// Lists accounts.
    List,
    /// Stops an account from signing in, and ends its browser sessions.
    Disable { login: String },
    /// Lets a disabled account sign in again.
    Enable { login: String },
    /// Sets a new password (read like `add`'s) and ends the account's
    /// browser sessions.
    ResetPassword { login: String },
}

#[derive(Subcommand, Debug)]
pub enum CredentialsCommand {
    /// Saves a credential (the server's, or with --user a person's own),
    /// read from standard input: `paddock credentials set
    /// anthropic_api_key < key.txt`, `paddock credentials set secret --name
    /// GITHUB_TOKEN < token.txt`. Never from a terminal, where it would
    /// be echoed and kept in the shell's history.
    Set {
        #[arg(value_parser = parse_kind)]
        kind: CredentialKind,
        /// A secret's name: the variable its sessions' commands get.
        #[arg(long)]
        name: Option<String>,
        /// Whose it is (by login); the server's when not given.
        #[arg(long)]
        user: Option<String>,
    },
    /// Lists saved credentials, by their hints.
    List,
    /// Deletes a saved credential.
    Delete {
        #[arg(value_parser = parse_kind)]
        kind: CredentialKind,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
    /// Re-seals every saved credential under a new master key, in one
    /// transaction: PADDOCK_NEW_MASTER_KEY, or a generated one (written to
    /// the key file, or printed when PADDOCK_MASTER_KEY is in use).
    RotateMasterKey,
}

fn parse_kind(value: &str) -> Result<CredentialKind, String> {
    value
        .parse()
        .map_err(|e: app::domain::AppError| e.to_string())
}

fn parse_role(value: &str) -> Result<Role, String> {
    value
        .parse()
        .map_err(|e: app::domain::AppError| e.to_string())
}

/// What the command line is named as in the audit log.
const ACTOR: &str = "command line";

/// A secret from standard input, all of it (a key file has several
/// lines) but its final line break; never typed at a terminal.
fn read_secret() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        anyhow::bail!(
            "give the credential on standard input, not at a terminal (it would be echoed): \
             `paddock credentials set anthropic_api_key < key.txt`"
        );
    }
    let mut all = String::new();
    stdin.lock().read_to_string(&mut all)?;
    Ok(all.trim_end_matches(['\r', '\n']).to_owned())
}

/// A password from standard input, or a generated one on a terminal.
fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let password = crate::secret::random_hex()[..24].to_owned();
        println!("Generated password (shown once): {password}");
        return Ok(password);
    }
    let mut line = String::new();
    if stdin.lock().read_line(&mut line)? == 0 {
        anyhow::bail!(
            "no password came on stdin: pipe one in (`echo \"$PASSWORD\" | paddock …`), or \
             run this on a terminal (`docker exec -it …`) to have one made and shown"
        );
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// `paddock health`: the readiness probe, from inside the machine.
async fn health(config: &Config) -> anyhow::Result<()> {
    let mut addr = config.listen_addr();
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{addr}/readyz");
    // This server itself, never through an HTTP_PROXY set for the world.
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .no_proxy()
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("no answer from {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("{body}");
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(())
}

pub async fn run(config: Config, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Health => health(&config).await,
        Command::RenderTriggerTemplates => {
            crate::template_renderers::serve(crate::triggers::prompt::prompt_and_key)
        }
        Command::Store(command) => on_store(config, command).await,
    }
}

async fn on_store(config: Config, command: StoreCommand) -> anyhow::Result<()> {
    let made = config.sqlite_file().filter(|file| !file.exists());
    let store = store::open(&config.database_url).await?;
    if let Some(file) = made {
        // Run from another folder, the relative default names a database
        // no server reads.
        eprintln!(
            "Made a new database at {} (a Paddock run in this folder uses it; elsewhere, give \
             the same DATABASE_URL).",
            file.display()
        );
    }
    let auth = Auth::new(store.clone(), Hub::new(), true);
    let fail = |e: app::domain::AppError| anyhow::anyhow!("{e}");
    match command {
        StoreCommand::User(UserCommand::Add { login, name, role }) => {
            // Before a password is made and shown for nothing.
            match auth.user_by_login(&login).await {
                Ok(_) => anyhow::bail!("The login {login:?} is taken."),
                Err(app::domain::AppError::NotFound(_)) => {}
                Err(e) => return Err(fail(e)),
            }
            let password = read_password()?;
            let user = auth
                .add_user(ACTOR, &login, &name, role, &password, None)
                .await
                .map_err(fail)?;
            println!(
                "Added {} ({}) as {}.",
                user.login, user.display_name, user.role
            );
        }
        StoreCommand::User(UserCommand::List) => {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<24} {:<8} {:<9} {:<24} NAME",
                "LOGIN", "ROLE", "STATUS", "LAST SIGN-IN"
            )?;
            for u in auth.list_users().await.map_err(fail)? {
                let last = u.last_sign_in_at.map_or_else(
                    || "never".to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
                );
                let status = if u.disabled { "disabled" } else { "active" };
                writeln!(
                    out,
                    "{:<24} {:<8} {:<9} {:<24} {}",
                    u.login, u.role, status, last, u.display_name
                )?;
            }
        }
        StoreCommand::User(UserCommand::Disable { login }) => {
            set_disabled(&auth, &login, true).await?
        }
        StoreCommand::User(UserCommand::Enable { login }) => {
            set_disabled(&auth, &login, false).await?
        }
        StoreCommand::User(UserCommand::ResetPassword { login }) => {
            let user = auth.user_by_login(&login).await.map_err(fail)?;
            let password = read_password()?;
            auth.reset_password(ACTOR, user.id, &password, None)
                .await
                .map_err(fail)?;
            println!(
                "Set a new password for {}; their browser sessions ended and their API tokens are revoked.",
                user.login
            );
        }
        StoreCommand::Credentials(CredentialsCommand::Set { kind, name, user }) => {
            let id = credential_id(&auth, kind, name, user.as_deref()).await?;
            let value = read_secret()?;
            let vault = Vault::open(&MasterKey::load(&config)?, store.clone(), &config).await?;
            let saved = vault
                .save_audited(&auth, ACTOR, None, id, &value)
                .await
                .map_err(fail)?;
            println!(
                "Saved {} for {}: {}",
                saved.id,
                who(user.as_deref()),
                saved.hint
            );
        }
        StoreCommand::Credentials(CredentialsCommand::List) => {
            let users = auth.list_users().await.map_err(fail)?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<24} {:<20} {:<12} SAVED BY",
                "WHOSE", "KIND", "HINT"
            )?;
            for c in store.list_credentials().await? {
                let whose = match c.id.scope {
                    CredentialScope::Server => "server".to_owned(),
                    CredentialScope::User(id) => users
                        .iter()
                        .find(|u| u.id == id)
                        .map_or_else(|| id.to_string(), |u| u.login.to_string()),
                };
                writeln!(
                    out,
                    "{:<24} {:<20} {:<12} {} ({})",
                    whose,
                    match c.id.name.as_str() {
                        "" => c.id.kind.to_string(),
                        name => format!("{}/{name}", c.id.kind),
                    },
                    c.hint,
                    c.updated_by,
                    c.updated_at.format("%Y-%m-%d %H:%M UTC")
                )?;
            }
        }
        StoreCommand::Credentials(CredentialsCommand::Delete { kind, name, user }) => {
            let id = credential_id(&auth, kind, name, user.as_deref()).await?;
            let vault = Vault::open(&MasterKey::load(&config)?, store.clone(), &config).await?;
            vault
                .delete_audited(&auth, ACTOR, None, &id)
                .await
                .map_err(fail)?;
            println!("Deleted {id} of {}.", who(user.as_deref()));
        }
        StoreCommand::Credentials(CredentialsCommand::RotateMasterKey) => {
            rotate_master_key(&config, &*store, &auth).await?;
        }
    }
    Ok(())
}

/// The credential the arguments name; whose is `--user LOGIN`'s, else the
/// server's.
async fn credential_id(
    auth: &Auth,
    kind: CredentialKind,
    name: Option<String>,
    user: Option<&str>,
) -> anyhow::Result<CredentialId> {
    let scope = match user {
        None => CredentialScope::Server,
        Some(login) => {
            let user = auth
                .user_by_login(login)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            CredentialScope::User(user.id)
        }
    };
    anyhow::ensure!(
        kind.is_named() == name.is_some(),
        "a secret or a git token needs --name, and only those have one"
    );
    Ok(CredentialId {
        scope,
        kind,
        name: name.unwrap_or_default(),
    })
}

fn who(user: Option<&str>) -> &str {
    user.unwrap_or("the server")
}

async fn set_disabled(auth: &Auth, login: &str, disabled: bool) -> anyhow::Result<()> {
    let fail = |e: app::domain::AppError| anyhow::anyhow!("{e}");
    let user = auth.user_by_login(login).await.map_err(fail)?;
    let change = UserChange {
        disabled: Some(disabled),
        ..UserChange::default()
    };
    auth.change_user(ACTOR, user.id, change, None)
        .await
        .map_err(fail)?;
    println!(
        "{} is {}.",
        user.login,
        if disabled { "disabled" } else { "active" }
    );
    Ok(())
}

async fn rotate_master_key(config: &Config, store: &dyn Store, auth: &Auth) -> anyhow::Result<()> {
    let old = MasterKey::load(config)?;
    let given = std::env::var("PADDOCK_NEW_MASTER_KEY").ok();
    let new = match &given {
        Some(text) => MasterKey::parse(text).context("PADDOCK_NEW_MASTER_KEY")?,
        None => MasterKey::generate(),
    };
    // With a key file, the new key is on disk before the database changes,
    // so no moment exists where the database's key is nowhere.
    let file = config
        .master_key
        .is_none()
        .then(|| config.master_key_file.clone());
    let staged = file.as_ref().map(|f| f.with_extension("key.new"));
    if let (Some(file), Some(staged)) = (&file, &staged) {
        if staged.exists() {
            return finish_rotation(store, auth, &old, file, staged).await;
        }
        new.write_new(staged)?;
    } else if given.is_none() {
        // Without a file, the key is shown before the database changes:
        // a command cut short after the change leaves it with its reader.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "The new master key (shown once) is:\n{}\nSet PADDOCK_MASTER_KEY to it before \
             Paddock starts again, once the credentials are re-sealed below.",
            new.to_hex()
        )
        .and_then(|()| out.flush())
        .context("cannot show the new master key; nothing changed")?;
    }
    let shown = file.is_none() && given.is_none();
    let count = vault::rotate(store, &old, &new)
        .await
        .map_err(|e| match shown {
            true => {
                e.context("the key shown above is not in use: keep PADDOCK_MASTER_KEY as it was")
            }
            false => e,
        })?;
    if let (Some(file), Some(staged)) = (&file, &staged) {
        put_in_place(staged, file)?;
        println!(
            "Re-sealed {count} credentials; the new key is in {}.",
            file.display()
        );
    } else if given.is_some() {
        println!("Re-sealed {count} credentials under PADDOCK_NEW_MASTER_KEY: set PADDOCK_MASTER_KEY to it.");
    } else {
        println!("Re-sealed {count} credentials under the master key shown above.");
    }
    println!("Restart Paddock now: a server that is running still holds the old key.");
    auth.audit(
        ACTOR,
        AuditAction::MasterKeyRotated,
        "",
        &format!("{count} credentials"),
        None,
    )
    .await;
    Ok(())
}

/// Renames the staged key (the one the credentials are sealed under now)
/// onto the key file.
fn put_in_place(staged: &std::path::Path, file: &std::path::Path) -> anyhow::Result<()> {
    std::fs::rename(staged, file).with_context(|| {
        format!(
            "the credentials are sealed under the key in {}; move it to {} by hand",
            staged.display(),
            file.display()
        )
    })
}

/// A rotation left a staged key (`master.key.new`): never deleted, as it
/// may be the only copy of the key the database is sealed under (a
/// rotation whose rename failed, or was cut short after its commit).
/// Where it is, the rename is finished; else nothing is done, and the
/// operator is told whose the file may be.
async fn finish_rotation(
    store: &dyn Store,
    auth: &Auth,
    old: &MasterKey,
    file: &std::path::Path,
    staged: &std::path::Path,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(staged)
        .with_context(|| format!("cannot read {}", staged.display()))?;
    let key = MasterKey::parse(&text).with_context(|| staged.display().to_string())?;
    // The key file's first: a database that holds nothing sealed yet (the
    // wrong one named) takes the key it is asked about as its own.
    anyhow::ensure!(
        !vault::seals(store, old).await?,
        "{} is left from a rotation that did not finish (the credentials are still sealed \
         under {}), or one running now: if none is, remove it and rotate again; nothing changed",
        staged.display(),
        file.display()
    );
    anyhow::ensure!(
        vault::seals(store, &key).await?,
        "neither {} nor {} is the key the credentials were saved with; nothing changed",
        file.display(),
        staged.display()
    );
    put_in_place(staged, file)?;
    println!(
        "An earlier rotation had sealed the credentials under {}: it is now {}. Restart \
         Paddock now.",
        staged.display(),
        file.display()
    );
    auth.audit(
        ACTOR,
        AuditAction::MasterKeyRotated,
        "",
        "an earlier rotation's key put in place",
        None,
    )
    .await;
    Ok(())
}

/// Parses the command line and runs what it asks for.
pub async fn main() -> anyhow::Result<()> {
    // No process of this host's user reads this one's memory or
    // environment (the API key, the master key, a database URL's
    // password) through /proc: a local sandbox's commands without
    // bubblewrap are such processes.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .context("cannot keep this process's memory from its user's other processes")?;
    let cli = Cli::parse();
    crate::telemetry::init(cli.config.log_format);
    match cli.command {
        None => crate::run(cli.config).await,
        Some(command) => run(cli.config, command).await,
    }
}
