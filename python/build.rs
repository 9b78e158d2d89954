fn main() {
    // an extension module leaves Python's symbols to the interpreter that loads it
    pyo3_build_config::add_extension_module_link_args();
}
