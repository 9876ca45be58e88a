"""Live delivery: notifications in the app and by e-mail; live channels across hub processes."""
