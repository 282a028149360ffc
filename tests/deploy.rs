//! The deployment files: docker-compose.yml parses and names the services, variables and
//! healthchecks the README promises; the Dockerfile is multi-stage and runs as a non-root user.
//! (No Docker engine runs on CI machines, so this checks the files, not a running stack.)

use serde_yaml::Value;

fn compose() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .expect("docker-compose.yml");
    let mut v: Value = serde_yaml::from_str(&text).expect("docker-compose.yml is valid YAML");
    v.apply_merge().expect("merge keys");
    v
}

fn env_of(service: &Value) -> &serde_yaml::Mapping {
    service["environment"]
        .as_mapping()
        .expect("environment is a mapping")
}

#[test]
fn compose_names_the_services_variables_and_healthchecks() {
    let c = compose();
    let services = c["services"].as_mapping().expect("services");
    for name in ["pubsub-emulator", "postgres", "api", "worker", "spawner"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let emulator = &c["services"]["pubsub-emulator"];
    assert!(emulator["image"]
        .as_str()
        .unwrap()
        .contains("google-cloud-cli"));
    assert!(emulator["healthcheck"]["test"].is_sequence());

    let worker = &c["services"]["worker"];
    assert_eq!(worker["build"].as_str(), Some("."));
    assert!(
        worker["healthcheck"]["test"].is_sequence(),
        "worker healthcheck"
    );
    assert_eq!(
        worker["depends_on"]["pubsub-emulator"]["condition"].as_str(),
        Some("service_healthy")
    );
    // Scalable: no fixed container name or host port on the worker.
    assert!(worker.get("container_name").is_none() && worker.get("ports").is_none());
    for service in ["worker", "spawner"] {
        let env = env_of(&c["services"][service]);
        for var in ["PUBSUB_PROJECT_ID", "QUEUE_NAME", "PUBSUB_EMULATOR_HOST"] {
            assert!(env.contains_key(var), "{service} lacks {var}");
        }
        assert_eq!(
            env["PUBSUB_EMULATOR_HOST"].as_str(),
            Some("pubsub-emulator:8085"),
            "{service} must reach the emulator service"
        );
    }
    // The API and the workers share one job store (PostgreSQL, for many containers).
    let api = &c["services"]["api"];
    let api_cmd: Vec<&str> = api["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(api_cmd.first(), Some(&"api"));
    assert!(
        api_cmd.iter().any(|a| a.starts_with("0.0.0.0:")),
        "{api_cmd:?}"
    );
    let store = env_of(api)["PUBSUB_JOBS_STORE"]
        .as_str()
        .expect("api store");
    assert!(
        store.starts_with("postgres://") && store.contains("@postgres:"),
        "{store}"
    );
    assert_eq!(env_of(worker)["PUBSUB_JOBS_STORE"].as_str(), Some(store));
    assert_eq!(
        api["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert!(c["services"]["postgres"]["healthcheck"]["test"].is_sequence());
    let spawner = &c["services"]["spawner"];
    let cmd: Vec<&str> = spawner["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(cmd.first(), Some(&"spawn"));
    // Every service that reaches the store waits for it, so each starts alone
    // (`docker compose run --rm spawner` included).
    for name in ["api", "worker", "spawner"] {
        let service = &c["services"][name];
        if env_of(service).contains_key("PUBSUB_JOBS_STORE") {
            assert_eq!(
                service["depends_on"]["postgres"]["condition"].as_str(),
                Some("service_healthy"),
                "{name} uses the store without waiting for PostgreSQL"
            );
        }
    }
    // MockJob retries five minutes apart unless a faster demo is asked for.
    assert_eq!(
        env_of(worker)["MOCK_JOB_RETRY_WAIT"].as_str(),
        Some("${MOCK_JOB_RETRY_WAIT:-300}")
    );
}

#[test]
fn dockerfile_is_multi_stage_and_runs_as_non_root() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("Dockerfile");
    let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage build expected");
    assert!(text.contains("COPY --from=build"));
    let user = text
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert_ne!(user.trim(), "USER root");
    assert!(text.contains("ENTRYPOINT [\"worker\"]"));
    // Every workspace member is copied in, or cargo cannot load the workspace.
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("Cargo.toml");
    let members = manifest
        .lines()
        .find(|l| l.starts_with("members"))
        .expect("workspace members");
    for member in members.split('"').skip(1).step_by(2).filter(|m| *m != ".") {
        assert!(
            text.contains(&format!("COPY {member} ./{member}")),
            "the Dockerfile does not copy workspace member {member}"
        );
    }
}
