"""The Asterisk protocol edge: FastAGI and AMI with their sans-I/O wire parsers; knows nothing of billing."""
