"""Running the paper: the job grid, collecting results, the research questions, a user's own scans, the benchmark.

runner   the notebook jobs of a profile (papermill, resumable) and the book's report pages
collect  runs -> the compact results/<profile>/ the book reads; the headline summary
rq       RQ1-RQ5 with paired tests
predict  `tumorlens predict`: a user's own JPEG/PNG/DICOM scans
bench    the side-by-side benchmark with detect-tumor
"""
