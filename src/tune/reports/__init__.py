"""What a sweep leaves to read: tables, figures, trial and sweep artifacts, the data report."""
