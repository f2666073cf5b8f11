"""Rating engine: facility tariffs, number classification and exact quotes. Knows nothing of Asterisk."""
