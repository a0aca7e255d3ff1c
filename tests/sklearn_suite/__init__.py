"""scikit-learn 1.9.1's own mixture tests (``sklearn/mixture/tests/test_gaussian_mixture.py``
and ``test_mixture.py``, BSD-3-Clause), copied and run against :class:`mixtures.GaussianMixture`
(issue 16 item 8). Each marked test and its reason: the docstring of ``test_gaussian_mixture.py``.
The copy is skipped where scikit-learn is not installed. To resynchronise with a newer
scikit-learn, copy the two files again and reapply the import swap and the marks.

Counts (``pytest tests/sklearn_suite``, global_dtype float32 and float64, seed 42):

=====================================  ======  ======  =======  =======
run                                    passed  failed  xfailed  skipped
=====================================  ======  ======  =======  =======
before: the plain copy, import swapped     65      16        0      270
after                                      69       0        7      287
now                                        70       0        8      287
=====================================  ======  ======  =======  =======

After: 57 of scikit-learn's tests pass unchanged (the 65 less 8 items that called only
scikit-learn's private functions and so tested scikit-learn, now skipped), plus 12 of ours that
check the private-API and float32 cases through the public API. The 16 failures became 7 strict
xfails (documented differences) and 9 skips (scikit-learn's private methods); the other 270
skips are scikit-learn's array-API tests, now skipped by us as well (30 of them by its own
marker first). About 15 s on two cores. Now: ``test_init`` is an eighth strict xfail (its
exact ``>=`` between n_init=10 and n_init=1 meets our batched restarts' rounding once k-means
seeds its tries together), with ours checking the same property within rounding.
"""
