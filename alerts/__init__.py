"""newsmon alerts: subscriptions, alert policy and delivery."""
