"""Fill-in for the Redshift Data API: statements that run and remember COPY JOBs, in place of
moto 5.2.5's, which never finish and answer every query with the same three made-up rows."""
