//! The plugin binary Terraform starts: `terraform-provider-sluice`. See `deploy/terraform/`.

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tf_provider::serve(
        "sluice",
        terraform_provider_sluice::SluiceProvider::default(),
    )
    .await
}
