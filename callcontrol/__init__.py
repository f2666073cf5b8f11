"""AdvancePay call control: FastAGI/AMI edge, call sessions, CLI."""
