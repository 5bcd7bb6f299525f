"""The platform's shared library: what every service needs beside its own domain code."""
