"""Fill-in for Elastic Beanstalk: applications, versions and environments that keep their option
settings, move through Launching/Updating to Ready and Green, and record their events, in place of
moto 5.2.5's, which has no versions, updates, events or configuration settings."""
