"""What every layer uses: errors and warnings, argument checks, model-file fields,
and the compiled row kernels with their thread control. Imports nothing else of emseg."""
