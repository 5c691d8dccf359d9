"""dicom_converter's code, one module per concern and per kind of object.

`dicom_converter.py` beside this package is the entry point (`python3 dicom_converter.py`,
`python3 -m dicom_converter`, the `dicom-converter` script); the name with an underscore keeps
this package from shadowing it, as pytest's `_pytest/` does beside `pytest.py`.

The modules, in the order data flows (each imports only those before it):

    base, sop -> reading, timing, values -> inputs -> pixels/ -> writers, gif -> dump, text
    -> redaction -> geometry, classify, layout -> job -> kinds/ -> results -> convert -> series
    -> pool -> index_page -> manifest -> batch -> cli

A kind of object (kinds/) never imports another kind; `convert.WRITERS` maps each kind to
its writer.
"""
