"""Inmate rosters from a facility's jail-management export, kept in SQL and read by running controllers."""
